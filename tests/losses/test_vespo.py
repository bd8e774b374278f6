"""vespo: ALGORITHMS.md II.10's vectors V1-V4, the loss and its gradient, parameter ranges."""

import math

import pytest
import torch

from rlzoo.errors import ConfigError
from rlzoo.losses import Objective, build
from rlzoo.types import PolicyBatch
from tests.losses.helpers import random_batch

VESPO = build("vespo")


def _phi(sum_delta: float, adv: float, log_is: float | None = None) -> float:
    """φ through the loss's own helpers for one sequence whose two tokens' log-ratios sum to ``sum_delta``."""
    log_ratio = torch.tensor([[sum_delta / 2, sum_delta / 2]], dtype=torch.float64)
    mask = torch.ones(1, 2, dtype=torch.bool)
    log_is_weight = None if log_is is None else torch.tensor([[log_is, 0.0]], dtype=torch.float64)
    log_w = VESPO.log_weight(log_ratio, mask, log_is_weight)
    return VESPO.phi(log_w[:, None], torch.tensor([[adv, adv]], dtype=torch.float64))[0, 0].item()


def gamma(w: float, k: float, lam: float) -> float:
    return w**k * math.exp(lam * (1 - w))


def test_defaults_are_trls() -> None:
    assert (VESPO.k_pos, VESPO.lambda_pos, VESPO.k_neg, VESPO.lambda_neg, VESPO.level) == (
        2.0,
        3.0,
        3.0,
        2.0,
        "token",
    )


def test_v1_sum_of_log_ratios_0_3() -> None:
    w = math.exp(0.3)  # 1.349859: a product of the token ratios, not length-normalised
    assert w == pytest.approx(1.349859, abs=5e-7)
    assert gamma(w, 2, 3) == pytest.approx(0.637898, abs=5e-7)  # A > 0: w^2 e^{3(1-w)}
    assert gamma(w, 3, 2) == pytest.approx(1.221748, abs=5e-7)  # A < 0: w^3 e^{2(1-w)}
    assert _phi(0.3, 1.0) == pytest.approx(gamma(w, 2, 3), rel=1e-12)
    assert _phi(0.3, -1.0) == pytest.approx(gamma(w, 3, 2), rel=1e-12)
    assert _phi(0.3, 0.0) == pytest.approx(gamma(w, 2, 3), rel=1e-12)  # A = 0 takes the positive pair


def test_v2_on_policy_weight_is_1() -> None:
    assert _phi(0.0, 1.0) == 1.0 and _phi(0.0, -1.0) == 1.0


def test_v3_rollout_is_weight_folds_into_w() -> None:
    w = math.exp(0.3) * 0.5  # log w = 0.3 + log 0.5 = -0.393147
    assert gamma(w, 2, 3) == pytest.approx(1.207941, abs=5e-7)
    assert _phi(0.3, 1.0, log_is=math.log(0.5)) == pytest.approx(gamma(w, 2, 3), rel=1e-12)


def test_v4_masked_is_weight_clamps_log_w_at_log_1e_8() -> None:
    # a token_mask weight of 0: log 0 = -inf -> clamped to log 1e-8, and so is log w: φ = 1e-16 e^{3(1 - 1e-8)}
    want = gamma(1e-8, 2, 3)
    assert want == pytest.approx(2.0e-15, rel=5e-3)
    assert _phi(0.0, 1.0, log_is=-math.inf) == pytest.approx(want, rel=1e-9)
    assert _phi(50.0, 1.0) == pytest.approx(gamma(math.exp(20), 2, 3), abs=0)  # log w clamped at 20: φ = 0


def test_loss_is_reinforce_weighted_by_the_detached_phi() -> None:
    batch = random_batch(7, 5, seed=61)
    out = Objective(policy="vespo", aggregation="token_mean")(batch)
    logp, old = torch.where(batch.mask, batch.logp, 0.0), torch.where(batch.mask, batch.old_logp, 0.0)
    adv = batch.advantages
    log_w = (logp - old).detach().sum(1).clamp(math.log(1e-8), 20)
    k = torch.where(adv >= 0, 2.0, 3.0).double()
    lam = torch.where(adv >= 0, 3.0, 2.0).double()
    phi = log_w.exp() ** k * torch.exp(lam * (1 - log_w.exp()))
    n = batch.mask.sum()
    want = (-(phi * adv)[:, None] * logp).where(batch.mask, 0.0).sum() / n
    assert out.loss.item() == pytest.approx(want.item(), rel=1e-12)
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    torch.testing.assert_close(
        grad, torch.where(batch.mask, -(phi * adv)[:, None] / n, 0.0), rtol=1e-12, atol=1e-15
    )
    assert out.metrics["vespo/phi"].item() == pytest.approx(
        (phi[:, None].expand_as(logp)[batch.mask]).mean().item(), rel=1e-12
    )


def test_hand_worked_two_tokens() -> None:
    batch = PolicyBatch(
        logp=torch.tensor([[-1.0, -2.0]], dtype=torch.float64, requires_grad=True),
        old_logp=torch.tensor([[-1.1, -2.2]], dtype=torch.float64),
        mask=torch.ones(1, 2, dtype=torch.bool),
        advantages=torch.tensor([-1.0], dtype=torch.float64),
    )
    phi = gamma(math.exp(0.3), 3, 2)  # A < 0, Σ Δ = 0.1 + 0.2
    out = Objective(policy="vespo")(batch)
    # ℓ = -φ A logp = φ logp: (φ·(-1) + φ·(-2)) / 2
    assert out.loss.item() == pytest.approx(-1.5 * phi, rel=1e-12)
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    torch.testing.assert_close(
        grad, torch.tensor([[phi / 2, phi / 2]], dtype=torch.float64), rtol=1e-12, atol=0
    )


@pytest.mark.parametrize(
    ("params", "match"),
    [({"k_pos": -1.0}, r"k_pos=-1\.0"), ({"lambda_neg": 0.0}, r"lambda_neg=0\.0 must be finite and >= 1e-4")],
)
def test_parameter_ranges(params: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build("vespo", **params)
