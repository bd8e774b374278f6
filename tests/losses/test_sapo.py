"""sapo: hand-worked gate values and gradients, gradcheck."""

import math

import pytest
import torch

from rlzoo.errors import ConfigError
from rlzoo.losses import Objective, build
from rlzoo.types import PolicyBatch


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _batch(ratios: list[float], adv: list[float]) -> PolicyBatch:
    old = torch.full((len(ratios), 1), -1.0, dtype=torch.float64)
    logp = (old + torch.tensor(ratios, dtype=torch.float64)[:, None].log()).requires_grad_()
    return PolicyBatch(
        logp, old, torch.ones_like(old, dtype=torch.bool), torch.tensor(adv, dtype=torch.float64)
    )


def test_on_policy_gate_is_2_over_tau_with_unit_slope() -> None:
    batch = _batch([1.0, 1.0], [1.0, -2.0])
    out = Objective(policy="sapo")(batch)
    # gate(1) = 4 σ(0) / τ = 2 / τ: -(2/1.0)(1) = -2 and -(2/1.05)(-2) = 4/1.05
    assert out.loss.item() == pytest.approx((-2 + 4 / 1.05) / 2, rel=1e-12)
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    # slope 4 σ(0)(1 - σ(0)) = 1 at r = 1, times d r / d logp = r = 1: -A / 2
    torch.testing.assert_close(grad, torch.tensor([[-0.5], [1.0]], dtype=torch.float64), rtol=1e-12, atol=0)


def test_off_policy_gate() -> None:
    batch = _batch([2.0], [1.0])
    out = Objective(policy="sapo")(batch)
    s = _sigmoid(1.0)  # τ (r - 1) = 1
    assert out.loss.item() == pytest.approx(-4 * s, rel=1e-12)
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    # d/dlogp = -A 4 σ(1 - σ) r
    assert grad.item() == pytest.approx(-4 * s * (1 - s) * 2, rel=1e-12)
    assert "clip/high" not in out.metrics


def test_gradcheck_float64() -> None:
    batch = _batch([0.7, 1.3, 1.0], [0.5, -1.0, 2.0])
    for spec in ("sapo", {"name": "sapo", "ratio": "sequence"}):
        objective = Objective(policy=spec, aggregation="seq_mean_token_mean")
        logp = batch.logp.detach().clone().requires_grad_()
        assert torch.autograd.gradcheck(lambda x, o=objective: o(batch.replace(logp=x)).loss, (logp,))


def test_temperatures_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"tau_neg=0\.0"):
        build("sapo", tau_neg=0.0)
