"""ppo_clip and gspo: hand-worked values and gradients, reference formula, gradcheck."""

import math

import pytest
import torch

from rlzoo.errors import ConfigError
from rlzoo.losses import Objective, build
from rlzoo.types import PolicyBatch
from tests.losses.helpers import random_batch
from tests.losses.oracles import aggregate, gspo_sequence_losses, ppo_token_loss

# Two sequences of two tokens; sequence 0 has A = +1, sequence 1 has A = -2.
RATIOS = [[1.5, 0.5], [0.5, 1.1]]
ADV = [1.0, -2.0]


def _batch(ratios: list[list[float]], adv: list[float]) -> PolicyBatch:
    old = torch.full((len(ratios), len(ratios[0])), -1.0, dtype=torch.float64)
    logp = (old + torch.tensor(ratios, dtype=torch.float64).log()).requires_grad_()
    mask = torch.ones_like(old, dtype=torch.bool)
    return PolicyBatch(logp=logp, old_logp=old, mask=mask, advantages=torch.tensor(adv, dtype=torch.float64))


def test_ppo_clip_hand_worked() -> None:
    batch = _batch(RATIOS, ADV)
    out = Objective(policy="ppo_clip", aggregation="token_mean")(batch)
    # r=1.5, A=+1: clipped high -> -1.2 | r=0.5, A=+1: -0.5 | r=0.5, A=-2: clipped low -> +2*0.8 = 1.6
    # r=1.1, A=-2: +2*1.1 = 2.2. Token mean: (-1.2 - 0.5 + 1.6 + 2.2) / 4 = 0.525
    assert out.loss.item() == pytest.approx(0.525, rel=1e-12)
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    # d/dlogp = -A r / 4 on unclipped tokens, 0 on clipped ones
    want = torch.tensor([[0.0, -1 * 0.5 / 4], [0.0, 2 * 1.1 / 4]], dtype=torch.float64)
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=1e-15)
    m = out.metrics
    assert m["clip/low"].item() == 0.25 and m["clip/high"].item() == 0.25
    assert m["ratio/mean"].item() == pytest.approx((1.5 + 0.5 + 0.5 + 1.1) / 4, rel=1e-12)
    assert m["ratio/max"].item() == pytest.approx(1.5, rel=1e-12)
    # k3 of old vs current, d = old - logp = -log r: 1/r + log r - 1
    k3 = [1 / r + math.log(r) - 1 for r in (1.5, 0.5, 0.5, 1.1)]
    assert m["kl/sampler"].item() == pytest.approx(sum(k3) / 4, rel=1e-12)
    assert m["loss/policy"].item() == pytest.approx(0.525, rel=1e-12)


def test_dual_clip_hand_worked() -> None:
    batch = _batch([[4.0, 2.0]], [-1.0])
    out = Objective(policy={"name": "ppo_clip", "dual_clip": 3.0})(batch)
    # r=4: max(4, 1.2) = 4 capped at -c A = 3 | r=2: max(2, 1.2) = 2 (below the cap). Mean 2.5
    assert out.loss.item() == pytest.approx(2.5, rel=1e-12)
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    torch.testing.assert_close(grad, torch.tensor([[0.0, 2.0 / 2]], dtype=torch.float64), rtol=1e-12, atol=0)
    assert out.metrics["clip/dual"].item() == 0.5
    # Without dual-clip the r=4 token is unbounded: (4 + 2) / 2 = 3
    assert Objective()(batch).loss.item() == pytest.approx(3.0, rel=1e-12)


def test_gspo_hand_worked() -> None:
    batch = _batch(RATIOS, ADV)
    out = Objective(policy="gspo", aggregation="seq_mean_token_mean")(batch)
    s0, s1 = math.sqrt(1.5 * 0.5), math.sqrt(0.5 * 1.1)  # exp(mean log r) = geometric mean
    assert s1 < 1 - 3e-4  # sequence 1 is clipped low
    # s0 = 0.866 < 1, A=+1: unclipped -> -s0 | s1 = 0.742 < 1 - 3e-4, A=-2: clipped -> 2 (1 - 3e-4)
    want = (-s0 + 2 * (1 - 3e-4)) / 2
    assert out.loss.item() == pytest.approx(want, rel=1e-12)
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    # d/dlogp_t of -(1/2) A s0 = -(1/2) s0 (1/2) per token of sequence 0; sequence 1 is clipped
    torch.testing.assert_close(
        grad, torch.tensor([[-s0 / 4, -s0 / 4], [0.0, 0.0]], dtype=torch.float64), rtol=1e-12, atol=0
    )
    assert out.metrics["clip/low"].item() == 0.5 and out.metrics["clip/high"].item() == 0.0


def test_gspo_is_ppo_clip_with_a_sequence_ratio() -> None:
    gspo = build("gspo")
    assert (gspo.eps_low, gspo.eps_high, gspo.ratio, gspo.level) == (3e-4, 4e-4, "sequence", "sequence")
    same = build({"name": "ppo_clip", "eps_low": 3e-4, "eps_high": 4e-4, "ratio": "sequence"})
    batch = random_batch(seed=4)
    torch.testing.assert_close(gspo(batch).loss, same(batch).loss, rtol=0, atol=0, equal_nan=True)
    with pytest.raises(ConfigError, match="ratio"):
        build("gspo", ratio="token")


@pytest.mark.parametrize("dual", [None, 3.0])
def test_ppo_clip_matches_reference_formula(dual: float | None) -> None:
    batch = random_batch(8, 6, seed=11)
    objective = Objective(
        policy={"name": "ppo_clip", "eps_high": 0.28, "dual_clip": dual}, aggregation="seq_mean_token_mean"
    )
    got = objective(batch).loss
    old, adv = torch.where(batch.mask, batch.old_logp, 0.0), batch.token_advantages
    ref_values = ppo_token_loss(torch.where(batch.mask, batch.logp, 0.0), old, adv, 0.2, 0.28, dual)
    want = aggregate(ref_values, batch.mask, batch.group_ids, "seq_mean_token_mean")
    (g_got,) = torch.autograd.grad(got, batch.logp)
    (g_want,) = torch.autograd.grad(want, batch.logp)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    torch.testing.assert_close(g_got, g_want, rtol=1e-10, atol=1e-14)


def test_gspo_matches_reference_formula() -> None:
    batch = random_batch(8, 6, seed=12)
    objective = Objective(
        policy={"name": "gspo", "eps_low": 0.05, "eps_high": 0.08}, aggregation="seq_mean_token_mean"
    )
    got = objective(batch).loss
    logp, old = torch.where(batch.mask, batch.logp, 0.0), torch.where(batch.mask, batch.old_logp, 0.0)
    want = (
        sum(gspo_sequence_losses(logp, old, batch.mask, batch.advantages, 0.05, 0.08)) / batch.logp.shape[0]
    )
    (g_got,) = torch.autograd.grad(got, batch.logp)
    (g_want,) = torch.autograd.grad(want, batch.logp)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    torch.testing.assert_close(g_got, g_want, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    "spec", [{"name": "ppo_clip", "dual_clip": 3.0}, {"name": "ppo_clip", "ratio": "sequence"}, "gspo"]
)
def test_gradcheck_float64(spec: object) -> None:
    batch = random_batch(4, 3, seed=5, padding_nan=False)
    aggregation = "seq_mean_token_mean"
    objective = Objective(policy=spec, aggregation=aggregation)
    logp = batch.logp.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: objective(batch.replace(logp=x)).loss, (logp,))


def test_log_ratio_is_clamped_at_20() -> None:
    batch = _batch([[1.0]], [1.0]).replace(
        logp=torch.tensor([[30.0]], dtype=torch.float64, requires_grad=True)
    )
    # r = exp(20) (not exp(31)): reported in ratio/max; the clipped loss is -1.2
    out = Objective()(batch)
    assert out.metrics["ratio/max"].item() == pytest.approx(math.exp(20), rel=1e-12)
    assert out.loss.item() == pytest.approx(-1.2, rel=1e-12)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"eps_low": 1.0}, "eps_low=1.0"),
        ({"eps_high": -0.1}, "eps_high=-0.1"),
        ({"dual_clip": 1.0}, "dual_clip=1.0"),
    ],
)
def test_parameter_ranges(params: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build("ppo_clip", **params)
