"""Top-ρ entropy selection: the test vectors of ALGORITHMS.md II.5, the step threshold, the quantile."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlzoo.errors import ConfigError, DataError
from rlzoo.selectors import SELECTORS, linear_quantile
from rlzoo.types import PolicyBatch


def _batch(entropy: list[list[float]], mask: list[list[bool]] | None = None, **fields: object) -> PolicyBatch:
    h = torch.tensor(entropy, dtype=torch.float32)
    logp = torch.full(h.shape, -1.0)
    return PolicyBatch(
        logp=logp,
        old_logp=logp.clone(),
        mask=torch.ones(h.shape, dtype=torch.bool) if mask is None else torch.tensor(mask),
        advantages=torch.ones(h.shape[0]),
        entropy=h,
        **fields,
    )


E1 = [0.1, 2.0, 0.5, 3.0, 1.0]


@pytest.mark.parametrize(
    ("entropy", "rho", "tau", "keep"),
    [
        (E1, 0.4, 1.4, [0, 1, 0, 1, 0]),  # E1
        ([1, 1, 1, 1, 2], 0.2, 1.2, [0, 0, 0, 0, 1]),  # E2
        ([1, 1, 1, 1, 1], 0.2, 1.0, [1, 1, 1, 1, 1]),  # E3: ties are kept
        (E1, 0.0, 3.0, [0, 0, 0, 1, 0]),  # E4: only the maximum
        (E1, 1.0, 0.1, [1, 1, 1, 1, 1]),  # rho = 1 keeps everything
    ],
)
def test_algorithms_md_vectors(entropy: list[float], rho: float, tau: float, keep: list[int]) -> None:
    selector = SELECTORS.build("top_entropy", rho=rho)
    assert selector.threshold(torch.tensor(entropy, dtype=torch.float32)).item() == pytest.approx(tau, rel=1e-6)
    out = selector(_batch([entropy]))
    assert out.keep.tolist() == [[bool(k) for k in keep]]
    assert out.metrics["select/top_entropy/kept"].item() == pytest.approx(sum(keep) / len(keep))
    assert out.metrics["select/top_entropy/threshold"].item() == pytest.approx(tau, rel=1e-6)


def test_the_quantile_spans_every_sequence_and_ignores_padding() -> None:
    # E1 spread over two sequences, with padding holding entropies that would change the quantile
    batch = _batch([[0.1, 2.0, 0.5, 99.0], [3.0, 1.0, 50.0, 50.0]], [[True, True, True, False], [True, True, False, False]])
    keep = SELECTORS.build("top_entropy", rho=0.4)(batch).keep
    assert keep.tolist() == [[False, True, False, False], [True, False, False, False]]


def test_a_step_threshold_handed_in_replaces_the_micro_batch_quantile() -> None:
    """The trainer computes τ over the whole step; each micro-batch then compares with it."""
    selector = SELECTORS.build("top_entropy", rho=0.4)
    step = [[0.1, 2.0, 0.5], [3.0, 1.0, 0.2]]
    tau = selector.threshold(torch.tensor(step).flatten())  # 6 values: rank 0.6·5 = 3 -> 1.0
    assert tau.item() == pytest.approx(1.0)
    second = _batch([step[1]], entropy_threshold=tau)
    assert selector(second).keep.tolist() == [[True, True, False]]
    # alone, the micro-batch would use its own quantile: rank 1.2 of [0.2, 1, 3] -> 1.4
    assert selector(_batch([step[1]])).keep.tolist() == [[True, False, False]]


def test_no_counted_token_keeps_nothing() -> None:
    selector = SELECTORS.build("top_entropy")
    assert selector.threshold(torch.zeros(0)).item() == float("inf")
    out = selector(_batch([[1.0, 2.0]], [[False, False]]))
    assert not bool(out.keep.any())
    assert torch.isnan(out.metrics["select/top_entropy/threshold"])


def test_errors() -> None:
    with pytest.raises(ConfigError, match=r"rho=1.5 must be in \[0, 1\]"):
        SELECTORS.build("top_entropy", rho=1.5)
    batch = _batch([[1.0]]).replace(entropy=None)
    with pytest.raises(DataError, match=r"token selector 'top_entropy': needs batch.entropy"):
        SELECTORS.build("top_entropy")(batch)
    with pytest.raises(DataError, match="entropy_threshold is NaN"):
        _batch([[1.0]], entropy_threshold=torch.tensor(float("nan")))


@settings(max_examples=60)
@given(
    values=st.lists(st.sampled_from([0.0, 0.25, 1.0, 1.5, 2.0, 7.0]) | st.floats(0, 10, width=32), min_size=1, max_size=40),
    q=st.sampled_from([0.0, 0.2, 0.5, 0.6, 0.8, 0.95, 1.0]) | st.floats(0, 1),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_linear_quantile_is_torch_quantile_bit_for_bit(values: list[float], q: float, dtype: torch.dtype) -> None:
    x = torch.tensor(values, dtype=dtype)
    assert torch.equal(linear_quantile(x, q), torch.quantile(x, q))


def test_an_infinite_step_threshold_keeps_nothing() -> None:
    out = SELECTORS.build("top_entropy")(_batch([[1.0, 5.0]], entropy_threshold=torch.tensor(float("inf"))))
    assert not bool(out.keep.any()) and torch.isnan(out.metrics["select/top_entropy/threshold"])


def test_linear_quantile_half_precision_and_a_large_input() -> None:
    x = torch.tensor([0.1, 2.0, 0.5, 3.0, 1.0], dtype=torch.bfloat16)
    assert linear_quantile(x, 0.6).dtype == torch.float32
    assert linear_quantile(x, 0.6).item() == pytest.approx(torch.quantile(x.float(), 0.6).item())
    big = torch.arange(2**24 + 3, dtype=torch.float32)  # torch.quantile refuses this many
    assert linear_quantile(big, 0.5).item() == (2**24 + 2) / 2
    assert linear_quantile(big, 1.0).item() == 2**24 + 2
