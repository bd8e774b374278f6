"""cispo: hand-worked values and gradients, the cap, gradcheck."""

import pytest
import torch

from rlzoo.errors import ConfigError
from rlzoo.losses import Objective, build
from rlzoo.types import PolicyBatch
from tests.losses.helpers import random_batch
from tests.losses.oracles import aggregate

# Tokens: r = [1.5, 0.5 | 0.5, 1.1], A = [+1 | -2], logp = [-1, -2 | -0.5, -1]
LOGP = [[-1.0, -2.0], [-0.5, -1.0]]
RATIOS = [[1.5, 0.5], [0.5, 1.1]]


def _batch() -> PolicyBatch:
    logp = torch.tensor(LOGP, dtype=torch.float64, requires_grad=True)
    old = logp.detach() - torch.tensor(RATIOS, dtype=torch.float64).log()
    return PolicyBatch(
        logp, old, torch.ones(2, 2, dtype=torch.bool), torch.tensor([1.0, -2.0], dtype=torch.float64)
    )


def test_defaults_follow_the_paper_and_trl_doc() -> None:
    cispo = build("cispo")
    assert (cispo.eps_low, cispo.eps_high, cispo.level) == (None, 4.0, "token")


def test_hand_worked_uncapped() -> None:
    batch = _batch()
    out = Objective(policy="cispo")(batch)
    # -w A logp with w = r (all below the cap of 5): 1.5, 1.0, -0.5, -2.2 -> mean -0.05
    assert out.loss.item() == pytest.approx((1.5 + 1.0 - 0.5 - 2.2) / 4, rel=1e-12)
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    # d/dlogp = -w A / 4 (w detached)
    want = torch.tensor([[-1.5 / 4, -0.5 / 4], [2 * 0.5 / 4, 2 * 1.1 / 4]], dtype=torch.float64)
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=0)
    assert out.metrics["clip/high"].item() == 0.0 and "clip/low" not in out.metrics


def test_hand_worked_capped_both_sides() -> None:
    batch = _batch()
    out = Objective(policy={"name": "cispo", "eps_low": 0.2, "eps_high": 0.2})(batch)
    # w = clip(r, 0.8, 1.2) = [1.2, 0.8 | 0.8, 1.1]; every token keeps its gradient
    w = [[1.2, 0.8], [0.8, 1.1]]
    adv = [1.0, -2.0]
    values = [-w[i][j] * adv[i] * LOGP[i][j] for i in range(2) for j in range(2)]
    assert out.loss.item() == pytest.approx(sum(values) / 4, rel=1e-12)
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    want = torch.tensor([[-w[i][j] * adv[i] / 4 for j in range(2)] for i in range(2)], dtype=torch.float64)
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=0)
    assert out.metrics["clip/high"].item() == 0.25 and out.metrics["clip/low"].item() == 0.5


def test_matches_reference_formula_with_a_stopped_weight() -> None:
    # gradcheck does not apply: the weight is detached on purpose, so the gradient is not the
    # derivative of the loss value. Compare with autograd of the plain formula instead.
    batch = random_batch(7, 5, seed=21)
    objective = Objective(
        policy={"name": "cispo", "eps_low": 0.1, "eps_high": 0.15}, aggregation="token_mean"
    )
    got = objective(batch).loss
    logp, old = torch.where(batch.mask, batch.logp, 0.0), torch.where(batch.mask, batch.old_logp, 0.0)
    weight = torch.exp(logp - old).clamp(0.9, 1.15).detach()
    want = aggregate(-weight * batch.token_advantages * logp, batch.mask, batch.group_ids, "token_mean")
    (g_got,) = torch.autograd.grad(got, batch.logp)
    (g_want,) = torch.autograd.grad(want, batch.logp)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    torch.testing.assert_close(g_got, g_want, rtol=1e-12, atol=1e-15)


def test_parameter_ranges() -> None:
    with pytest.raises(ConfigError, match=r"eps_low=1\.5"):
        build("cispo", eps_low=1.5)
    with pytest.raises(ConfigError, match=r"eps_high=-1\.0"):
        build("cispo", eps_high=-1.0)
