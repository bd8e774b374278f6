"""clip_cov and kl_cov: ALGORITHMS.md II.3's vector C1, the seeded draw, per-micro-batch selection."""

import functools
import math
import operator

import pytest
import torch

from rlzoo.errors import ConfigError
from rlzoo.losses import Objective, build
from rlzoo.losses.cov import token_covariance
from rlzoo.types import PolicyBatch
from tests.losses.helpers import pad, random_batch, rows

NAN = math.nan
LOGP = [[-0.1, -1.0, -2.0], [-0.5, -3.0, NAN]]
OLD = [[-0.2, -1.0, -2.1], [-0.4, -3.2, NAN]]
MASK = [[True, True, True], [True, True, False]]


def _c1(adv: list[float] | None = None) -> PolicyBatch:
    return PolicyBatch(
        logp=torch.tensor(LOGP, dtype=torch.float64, requires_grad=True),
        old_logp=torch.tensor(OLD, dtype=torch.float64),
        mask=torch.tensor(MASK),
        advantages=torch.tensor(adv or [1.0, -1.0], dtype=torch.float64),
        group_ids=torch.tensor([0, 1]),
    )


# r = exp(logp - old): row 0 [e^.1, 1, e^.1] with A = +1, row 1 [e^-.1, e^.2] with A = -1
R = [[math.exp(0.1), 1.0, math.exp(0.1)], [math.exp(-0.1), math.exp(0.2)]]


def test_c1_covariance() -> None:
    batch = _c1()
    logp = torch.where(batch.mask, batch.logp, 0.0)
    cov = token_covariance(logp, batch.token_advantages, batch.mask)
    # Ā = (1 + 1 + 1 - 1 - 1) / 5 = 0.2; mean logp = -6.6 / 5 = -1.32
    a_bar, l_bar = 0.2, -1.32
    hand = [
        [(a - a_bar) * (lp - l_bar) for lp in row if not math.isnan(lp)]
        for a, row in zip([1.0, -1.0], LOGP, strict=True)
    ]
    assert hand[0] == pytest.approx([0.976, 0.256, -0.544], abs=1e-12)
    assert hand[1] == pytest.approx([-0.984, 2.016], abs=1e-12)
    torch.testing.assert_close(cov[0], torch.tensor(hand[0], dtype=torch.float64), rtol=0, atol=1e-14)
    torch.testing.assert_close(cov[1, :2], torch.tensor(hand[1], dtype=torch.float64), rtol=0, atol=1e-14)
    assert cov[1, 2].item() == 0.0 and not cov.requires_grad


def test_c1_kl_cov() -> None:
    batch = _c1()
    out = Objective(policy={"name": "kl_cov", "fraction": 0.4, "beta": 1.0})(batch)
    # k = max(⌊0.4 · 5⌋, 1) = 2: the largest Cov are (1,1) = 2.016 and (0,0) = 0.976.
    # Those get -A r + |logp - old|: (0,0) -e^.1 + 0.1, (1,1) e^.2 + 0.2; the rest -A r.
    ell = [-R[0][0] + 0.1, -R[0][1], -R[0][2], R[1][0], R[1][1] + 0.2]
    assert ell == pytest.approx([-1.005171, -1.0, -1.105171, 0.904837, 1.421403], abs=5e-7)
    assert out.loss.item() == pytest.approx(sum(ell) / 5, rel=1e-12)
    assert out.loss.item() == pytest.approx(-0.156820, abs=5e-7)
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    # ∂/∂logp: -A r, plus β sign(logp - old) on the two selected tokens (both +); / 5 tokens
    want = [[(-R[0][0] + 1) / 5, -R[0][1] / 5, -R[0][2] / 5], [R[1][0] / 5, (R[1][1] + 1) / 5, 0.0]]
    torch.testing.assert_close(grad, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=0)
    assert out.metrics["cov/selected"].item() == pytest.approx(2 / 5)


def test_c1_clip_cov_at_defaults() -> None:
    batch = _c1()
    clip_cov = build("clip_cov")
    assert (clip_cov.fraction, clip_cov.cov_low, clip_cov.cov_high, clip_cov.eps_low, clip_cov.eps_high) == (
        2e-4,
        1.0,
        5.0,
        0.2,
        0.2,
    )
    out = Objective(policy=clip_cov)(batch)
    # No token is PPO-clipped (ratios within [0.8, 1.2] on the side that matters); the only Cov in
    # (1, 5) is (1,1) = 2.016, and n = max(⌊2e-4 · 5⌋, 1) = 1: its loss (and gradient) becomes 0.
    ell = [-R[0][0], -R[0][1], -R[0][2], R[1][0], 0.0]
    assert ell == pytest.approx([-1.105171, -1.0, -1.105171, 0.904837, 0.0], abs=5e-7)
    assert out.loss.item() == pytest.approx(sum(ell) / 5, rel=1e-12)
    assert out.loss.item() == pytest.approx(-0.461101, abs=5e-7)
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    want = [[-R[0][0] / 5, -R[0][1] / 5, -R[0][2] / 5], [R[1][0] / 5, 0.0, 0.0]]
    torch.testing.assert_close(grad, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=0)
    assert out.metrics["cov/selected"].item() == pytest.approx(1 / 5)


def test_clip_cov_skips_tokens_ppo_already_clipped() -> None:
    batch = _c1([1.0, 1.0])
    logp = torch.where(batch.mask, batch.logp, 0.0)
    cov = token_covariance(logp, batch.token_advantages, batch.mask)
    assert torch.equal(cov, torch.zeros_like(cov))  # equal advantages: nothing covaries
    # A = [3, 1]: Ā = 11/5 = 2.2 and Cov(1,1) = (1 - 2.2)(-3 + 1.32) = 2.016 again, the only one in (1, 5).
    # Token (1,1) has A > 0 and r = e^0.2: PPO clips it high when eps_high = 0.1, so it is no candidate.
    batch = _c1([3.0, 1.0])
    loose = build("clip_cov", eps_high=0.5)(batch)
    tight = build("clip_cov", eps_high=0.1)(batch)
    assert loose.metrics["cov/selected"].item() == pytest.approx(1 / 5)
    assert loose.loss[1, 1].item() == 0.0
    assert tight.metrics["cov/selected"].item() == 0.0 and tight.metrics["clip/high"].item() == pytest.approx(
        3 / 5
    )  # also e^0.1 > 1.1 on row 0
    assert tight.loss[1, 1].item() == pytest.approx(-1.1, rel=1e-12)  # -A clip(r) = -1.1


def _many_candidates(b: int = 6, t: int = 8) -> PolicyBatch:
    """On-policy, advantages ±1 by row, log-probs spread: many tokens with Cov in (1, 5)."""
    g = torch.Generator().manual_seed(3)
    logp = -torch.rand(b, t, generator=g, dtype=torch.float64) * 8
    adv = torch.tensor([1.0, -1.0] * (b // 2), dtype=torch.float64) * 2
    return PolicyBatch(
        logp=logp.requires_grad_(),
        old_logp=logp.detach().clone(),
        mask=torch.ones(b, t, dtype=torch.bool),
        advantages=adv,
    )


def _selected(loss: dict | str, batch: PolicyBatch) -> torch.Tensor:
    """The tokens whose gradient the loss stopped (on-policy: where it differs from plain REINFORCE)."""
    (grad,) = torch.autograd.grad(Objective(policy=loss)(batch).loss, batch.logp)
    (plain,) = torch.autograd.grad(Objective(policy="reinforce")(batch).loss, batch.logp)
    differs = ~torch.isclose(grad, plain, rtol=1e-12, atol=0)
    assert torch.equal(grad[differs], torch.zeros_like(grad[differs]))  # elsewhere exactly the plain PG
    return differs


def test_clip_cov_draw_is_seeded_reproducible_and_ignores_padding() -> None:
    batch = _many_candidates()
    logp = torch.where(batch.mask, batch.logp, 0.0).detach()
    candidates = (token_covariance(logp, batch.token_advantages, batch.mask) > 1) & (
        token_covariance(logp, batch.token_advantages, batch.mask) < 5
    )
    assert candidates.sum() > 4
    spec = {"name": "clip_cov", "fraction": 0.05}  # n = max(⌊0.05 · 48⌋, 1) = 2
    first = _selected(spec, batch)
    assert first.sum() == 2 and bool((first <= candidates).all())
    assert torch.equal(_selected(spec, batch), first)  # the same micro-batch, the same draw
    padded = pad(batch, 3)
    assert torch.equal(_selected(spec, padded)[:, :8], first)  # appended padding changes nothing
    draws = {
        tuple(_selected({**spec, "seed": s}, batch).flatten().nonzero().flatten().tolist()) for s in range(40)
    }
    assert len(draws) > 10  # other seeds, other draws
    hit = torch.zeros_like(candidates)
    for s in range(200):
        hit |= _selected({"name": "clip_cov", "fraction": 0.02, "seed": s}, batch)
    assert torch.equal(hit, candidates)  # every candidate can be drawn, nothing else is


def test_at_most_n_candidates_are_all_selected() -> None:
    batch = _many_candidates()
    logp = torch.where(batch.mask, batch.logp, 0.0).detach()
    cov = token_covariance(logp, batch.token_advantages, batch.mask)
    candidates = (cov > 1) & (cov < 5)
    everything = _selected({"name": "clip_cov", "fraction": 1.0}, batch)
    assert torch.equal(everything, candidates)


def test_kl_cov_ties_go_to_the_first_position_and_zero_covariance_selects_nothing() -> None:
    logp = torch.tensor([[-1.0, -3.0, -1.0], [-3.0, -1.0, -3.0]], dtype=torch.float64, requires_grad=True)
    batch = PolicyBatch(
        logp=logp,
        old_logp=logp.detach() - 0.1,
        mask=torch.ones(2, 3, dtype=torch.bool),
        advantages=torch.tensor([1.0, -1.0], dtype=torch.float64),
    )
    # Cov = (±1)(logp + 2): +1 at (0,0), (0,2), (1,0), (1,2) (ties), -1 elsewhere. k = ⌊0.5 · 6⌋ = 3.
    term = build("kl_cov", fraction=0.5)(batch)
    penalised = (term.loss - -batch.token_advantages * math.exp(0.1)).abs() > 1e-12  # -A r, r = e^0.1
    assert penalised.tolist() == [[True, False, True], [True, False, False]]
    zero = build("kl_cov", fraction=0.5)(batch.replace(advantages=torch.zeros(2, dtype=torch.float64)))
    assert zero.metrics["cov/selected"].item() == 0.0


def test_selection_is_per_micro_batch_as_declared() -> None:
    batch = _c1()
    assert build("clip_cov").depends_on_split and build("kl_cov").depends_on_split
    # One sequence per micro-batch: every advantage equals the micro-batch's mean, Cov = 0 and nothing
    # is selected, so the split loss is the loss without selection, not the whole batch's.
    for spec, unselected in [
        ("clip_cov", "ppo_clip"),
        ({"name": "kl_cov", "fraction": 0.4}, {"name": "kl_cov", "beta": 0.0}),
    ]:
        objective = Objective(policy=spec)
        parts = [rows(batch, torch.tensor([i])) for i in range(2)]
        totals = functools.reduce(operator.add, (objective.totals(p, 2) for p in parts))
        split = sum(objective(p.replace(totals=totals)).loss for p in parts)
        assert split.item() == pytest.approx(Objective(policy=unselected)(batch).loss.item(), rel=1e-12)
        assert split.item() != pytest.approx(objective(batch).loss.item(), rel=1e-6)


def test_kl_cov_has_no_ratio_clip() -> None:
    batch = random_batch(6, 5, seed=51)
    term = build("kl_cov", beta=0.0)(batch)
    logp, old = torch.where(batch.mask, batch.logp, 0.0), torch.where(batch.mask, batch.old_logp, 0.0)
    want = -batch.token_advantages * torch.exp(logp - old)
    torch.testing.assert_close(term.loss[batch.mask], want[batch.mask], rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("clip_cov", {"fraction": 0.0}, r"fraction=0\.0"),
        (
            "clip_cov",
            {"fraction": 2.0},
            r"fraction=2\.0 must be in \(0, 1\] \(a fraction, not a percentage\)",
        ),
        ("clip_cov", {"cov_low": 5.0, "cov_high": 1.0}, r"cov_high=1\.0 must be finite and > cov_low"),
        ("clip_cov", {"seed": -1}, "seed=-1"),
        ("clip_cov", {"eps_low": 1.5}, r"eps_low=1\.5"),
        ("kl_cov", {"beta": -1.0}, r"beta=-1\.0"),
        ("kl_cov", {"fraction": 0.0}, r"fraction=0\.0"),
    ],
)
def test_parameter_ranges(name: str, params: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build(name, **params)
