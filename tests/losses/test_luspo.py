"""luspo: ALGORITHMS.md II.10's vector LU1, the length-weighted GSPO oracle, composition."""

import math

import pytest
import torch

from rlzoo.errors import ConfigError
from rlzoo.losses import Objective, build
from rlzoo.types import PolicyBatch
from tests.losses.helpers import random_batch
from tests.losses.oracles import gspo_sequence_losses

LUSPO = Objective(policy="luspo", aggregation="seq_mean_token_sum")


def _lu1() -> PolicyBatch:
    old = torch.full((2, 3), -2.0, dtype=torch.float64)
    deltas = torch.tensor([[0.001, 0.003, 0.0], [0.01, 0.01, 0.01]], dtype=torch.float64)
    return PolicyBatch(
        logp=(old + deltas).requires_grad_(),
        old_logp=old,
        mask=torch.tensor([[True, True, False], [True, True, True]]),
        advantages=torch.tensor([1.0, 1.0], dtype=torch.float64),
    )


def test_defaults_are_the_papers_clip_range() -> None:
    luspo = build("luspo")
    assert (luspo.eps_low, luspo.eps_high, luspo.ratio, luspo.level) == (2e-3, 2.5e-3, "sequence", "token")
    with pytest.raises(ConfigError, match="ratio"):
        build("luspo", ratio="token")


def test_lu1_value_and_gradient() -> None:
    batch = _lu1()
    out = LUSPO(batch)
    s1 = math.exp((0.001 + 0.003) / 2)  # 1.002002 < 1 + 2.5e-3: unclipped
    s2 = math.exp(0.01)  # 1.010050 > 1.0025: clipped to 1.0025 (A > 0), zero gradient
    assert s1 == pytest.approx(1.002002, abs=5e-7) and s2 == pytest.approx(1.010050, abs=5e-7)
    contrib = [-2 * s1, -3 * 1.0025]  # |o_i| ℓ_i: -2.004004, -3.0075
    assert contrib == pytest.approx([-2.004004, -3.0075], abs=5e-7)
    assert out.loss.item() == pytest.approx(sum(contrib) / 2, rel=1e-12)
    assert out.loss.item() == pytest.approx(-2.505752, abs=5e-7)
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    # ∂/∂logp_t of (1/B)|o_1|(-s_1) = -(1/2)·2·s_1·(1/2) = -s_1/2 per token of sequence 1
    want = torch.tensor([[-s1 / 2, -s1 / 2, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=0)
    assert out.metrics["clip/high"].item() == pytest.approx(3 / 5)


@pytest.mark.parametrize(("eps_low", "eps_high"), [(2e-3, 2.5e-3), (0.05, 0.08)])
def test_matches_length_weighted_gspo_oracle(eps_low: float, eps_high: float) -> None:
    batch = random_batch(8, 6, seed=13)
    got = Objective(
        policy={"name": "luspo", "eps_low": eps_low, "eps_high": eps_high}, aggregation="seq_mean_token_sum"
    )(batch).loss
    logp, old = torch.where(batch.mask, batch.logp, 0.0), torch.where(batch.mask, batch.old_logp, 0.0)
    losses = gspo_sequence_losses(logp, old, batch.mask, batch.advantages, eps_low, eps_high)
    lengths = batch.mask.sum(1).tolist()
    want = sum(n * ell for n, ell in zip(lengths, losses, strict=True)) / len(lengths)
    (g_got,) = torch.autograd.grad(got, batch.logp)
    (g_want,) = torch.autograd.grad(want, batch.logp)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    torch.testing.assert_close(g_got, g_want, rtol=1e-10, atol=1e-14)


def test_other_aggregations_rescale_or_give_gspo() -> None:
    batch = random_batch(8, 6, seed=14)
    spec = {"name": "luspo", "eps_low": 0.05, "eps_high": 0.05}
    luspo = Objective(policy=spec, aggregation="seq_mean_token_sum")(batch).loss
    tokens = Objective(policy=spec, aggregation="token_mean")(batch).loss
    assert tokens.item() == pytest.approx(luspo.item() * 8 / batch.mask.sum().item(), rel=1e-12)
    per_sequence = Objective(policy=spec, aggregation="seq_mean_token_mean")(batch).loss
    gspo = Objective(
        policy={"name": "gspo", "eps_low": 0.05, "eps_high": 0.05}, aggregation="seq_mean_token_mean"
    )
    assert per_sequence.item() == pytest.approx(gspo(batch).loss.item(), rel=1e-12)


def test_gradcheck_float64() -> None:
    batch = random_batch(4, 3, seed=5, padding_nan=False)
    objective = Objective(
        policy={"name": "luspo", "eps_low": 0.1, "eps_high": 0.1}, aggregation="seq_mean_token_sum"
    )
    logp = batch.logp.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: objective(batch.replace(logp=x)).loss, (logp,))
