"""The chunked log-prob kernels against the naive log_softmax().gather(): values, entropy, gradients."""

import pytest
import torch

from rlzoo.errors import ConfigError, DataError
from rlzoo.losses import TokenLogProbs, token_logprobs, token_logprobs_from_hidden
from tests.losses.oracles import naive_logprobs

# float32 compute: values to ~1e-6 relative; bf16 inputs are compared after the same upcast.
TOL = {torch.float64: 1e-12, torch.float32: 2e-5, torch.bfloat16: 2e-5}


def _weighted(out_logp: torch.Tensor, out_ent: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    w1 = torch.randn(out_logp.shape, generator=g, dtype=torch.float64).to(out_logp.dtype)
    w2 = torch.randn(out_logp.shape, generator=g, dtype=torch.float64).to(out_logp.dtype)
    return (out_logp * w1 + out_ent * w2).sum()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize(("v", "chunk_rows"), [(37, 4), (1000, 7), (129, None)])
def test_logits_kernel_matches_naive(dtype: torch.dtype, v: int, chunk_rows: int | None) -> None:
    g = torch.Generator().manual_seed(v)
    logits = (torch.randn(3, 11, v, generator=g) * 4).to(dtype).requires_grad_()
    labels = torch.randint(0, v, (3, 11), generator=g)
    out = token_logprobs(logits, labels, temperature=0.7, entropy=True, chunk_rows=chunk_rows)
    assert out.logp.dtype == torch.promote_types(dtype, torch.float32) and out.logp.shape == (3, 11)
    (grad,) = torch.autograd.grad(_weighted(out.logp, out.entropy, torch.Generator().manual_seed(1)), logits)
    want_logp, want_ent = naive_logprobs(logits, labels, 0.7)
    (want_grad,) = torch.autograd.grad(
        _weighted(want_logp, want_ent, torch.Generator().manual_seed(1)), logits
    )
    tol = TOL[dtype]
    torch.testing.assert_close(out.logp, want_logp, rtol=tol, atol=tol)
    torch.testing.assert_close(out.entropy, want_ent, rtol=tol, atol=tol)
    assert grad.dtype == dtype
    # bf16 gradients: both paths round the same float32 numbers to bf16 (one ulp apart at most)
    grad_tol = 8e-3 if dtype == torch.bfloat16 else tol
    torch.testing.assert_close(grad.double(), want_grad.double(), rtol=grad_tol, atol=grad_tol)


def test_non_contiguous_slice_and_one_output_used() -> None:
    g = torch.Generator().manual_seed(5)
    full = torch.randn(2, 9, 50, generator=g, requires_grad=True)
    logits = full[:, 2:-1]  # [2, 6, 50], rows of different sequences cannot be merged
    labels = torch.randint(0, 50, (2, 6), generator=g)
    out = token_logprobs(logits, labels, entropy=True, chunk_rows=4)
    (g_logp,) = torch.autograd.grad(out.logp.sum(), full, retain_graph=True)  # entropy unused
    (g_ent,) = torch.autograd.grad(out.entropy.sum(), full)  # logp unused
    want_logp, want_ent = naive_logprobs(logits, labels)
    (w_logp,) = torch.autograd.grad(want_logp.sum(), full, retain_graph=True)
    (w_ent,) = torch.autograd.grad(want_ent.sum(), full)
    torch.testing.assert_close(out.logp, want_logp, rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(g_logp, w_logp, rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(g_ent, w_ent, rtol=2e-5, atol=2e-5)
    assert torch.equal(g_logp[:, :2], torch.zeros_like(g_logp[:, :2]))


def test_without_entropy() -> None:
    logits = torch.randn(2, 3, 10, dtype=torch.float64)
    labels = torch.randint(0, 10, (2, 3))
    out = token_logprobs(logits, labels)
    assert isinstance(out, TokenLogProbs) and out.entropy is None
    torch.testing.assert_close(out.logp, naive_logprobs(logits, labels)[0], rtol=1e-12, atol=1e-12)


def test_gradcheck_float64() -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 7, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 7, (2, 3), generator=g)

    def fn(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = token_logprobs(x, labels, temperature=1.3, entropy=True, chunk_rows=2)
        return out.logp, out.entropy

    assert torch.autograd.gradcheck(fn, (logits,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_hidden_kernel_matches_naive(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(3)
    states = torch.randn(3, 10, 16, generator=g).to(dtype).requires_grad_()
    hidden = states[:, 1:9]  # a slice, as a trainer takes the completion positions
    weight = (torch.randn(101, 16, generator=g) / 4).to(dtype).requires_grad_()
    labels = torch.randint(0, 101, (3, 8), generator=g)
    out = token_logprobs_from_hidden(hidden, weight, labels, temperature=0.9, entropy=True, chunk_rows=5)
    weighted = _weighted(out.logp, out.entropy, torch.Generator().manual_seed(4))
    grads = torch.autograd.grad(weighted, (states, weight))
    want_logp, want_ent = naive_logprobs(hidden @ weight.T, labels, 0.9)
    want_weighted = _weighted(want_logp, want_ent, torch.Generator().manual_seed(4))
    want = torch.autograd.grad(want_weighted, (states, weight))
    tol = 2e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.logp, want_logp, rtol=tol, atol=tol)
    torch.testing.assert_close(out.entropy, want_ent, rtol=tol, atol=tol)
    for got, ref in zip(grads, want, strict=True):
        assert got.dtype == dtype
        scale = ref.double().abs().max().item()
        torch.testing.assert_close(got.double(), ref.double(), rtol=tol, atol=tol * scale)


def test_hidden_kernel_gradcheck_float64_and_partial_grads() -> None:
    g = torch.Generator().manual_seed(6)
    hidden = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(9, 4, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 9, (2, 3), generator=g)

    def fn(h: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = token_logprobs_from_hidden(h, w, labels, temperature=0.8, entropy=True, chunk_rows=4)
        return out.logp, out.entropy

    assert torch.autograd.gradcheck(fn, (hidden, weight))
    frozen = weight.detach()
    (g_h,) = torch.autograd.grad(token_logprobs_from_hidden(hidden, frozen, labels).logp.sum(), hidden)
    (w_h,) = torch.autograd.grad(naive_logprobs(hidden @ frozen.T, labels)[0].sum(), hidden)
    torch.testing.assert_close(g_h, w_h, rtol=1e-10, atol=1e-12)


def test_bad_arguments() -> None:
    logits = torch.randn(1, 2, 5)
    with pytest.raises(DataError, match=r"labels\[0, 1\] = 5 is not a token id in \[0, 5\)"):
        token_logprobs(logits, torch.tensor([[0, 5]]))
    with pytest.raises(DataError, match="labels"):
        token_logprobs(logits, torch.tensor([[-100, 1]]))
    with pytest.raises(ConfigError, match=r"temperature=0\.0 must be > 0"):
        token_logprobs(logits, torch.tensor([[0, 1]]), temperature=0.0)
    with pytest.raises(ConfigError, match="chunk_rows=0"):
        token_logprobs(logits, torch.tensor([[0, 1]]), chunk_rows=0)
    with pytest.raises(DataError, match="they must match"):
        token_logprobs_from_hidden(
            torch.randn(1, 2, 3), torch.randn(5, 3, dtype=torch.float64), torch.tensor([[0, 1]])
        )
