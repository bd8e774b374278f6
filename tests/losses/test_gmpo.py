"""gmpo: ALGORITHMS.md II.1's vectors G1, G2, the property against GSPO, gradcheck, composition."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlzoo.errors import ConfigError
from rlzoo.losses import Objective, build
from rlzoo.types import PolicyBatch
from tests.losses.helpers import random_batch

GMPO = Objective(policy="gmpo", aggregation="seq_mean_token_mean")


def _batch(deltas: list[list[float]], mask: list[list[bool]], adv: list[float]) -> PolicyBatch:
    old = torch.full((len(deltas), len(deltas[0])), -1.0, dtype=torch.float64)
    return PolicyBatch(
        logp=(old + torch.tensor(deltas, dtype=torch.float64)).requires_grad_(),
        old_logp=old,
        mask=torch.tensor(mask),
        advantages=torch.tensor(adv, dtype=torch.float64),
    )


G1 = ([0.1, 0.5, -0.2], [True, True, True], 1.0)
G2 = ([-0.6, 0.2, 0.0], [True, True, False], -1.0)


def test_defaults_are_the_papers_log_space_range() -> None:
    gmpo = build("gmpo")
    assert (gmpo.eps_low, gmpo.eps_high, gmpo.level) == (0.4, 0.4, "sequence")


def test_g1_value_and_gradient() -> None:
    batch = _batch([G1[0]], [G1[1]], [G1[2]])
    out = GMPO(batch)
    # ĉ = [0.1, 0.4 (0.5 capped, A > 0), -0.2]: mean 0.1, R = e^0.1 = 1.105171, L = -A R
    r = math.exp((0.1 + 0.4 - 0.2) / 3)
    assert r == pytest.approx(1.105171, abs=5e-7)
    assert out.loss.item() == pytest.approx(-r, rel=1e-12)
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    # ∂L/∂logp_t = -A R / |o| on unclipped tokens, 0 on the clipped one: [-0.368390, 0, -0.368390]
    want = torch.tensor([[-r / 3, 0.0, -r / 3]], dtype=torch.float64)
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=0)
    assert want[0, 0].item() == pytest.approx(-0.368390, abs=5e-7)
    assert out.metrics["clip/high"].item() == pytest.approx(1 / 3) and out.metrics["clip/low"].item() == 0


def test_g2_value_padding_and_gradient() -> None:
    batch = _batch([G2[0]], [G2[1]], [G2[2]])
    out = GMPO(batch)
    # ĉ = [-0.4 (-0.6 floored, A < 0), 0.2]; the padded 0.0 is not counted: R = e^((-0.4 + 0.2) / 2) = e^-0.1
    r = math.exp(-0.1)
    assert r == pytest.approx(0.904837, abs=5e-7)
    assert out.loss.item() == pytest.approx(r, rel=1e-12)  # L = -A R = +0.904837
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    torch.testing.assert_close(
        grad, torch.tensor([[0.0, r / 2, 0.0]], dtype=torch.float64), rtol=1e-12, atol=0
    )
    assert out.metrics["clip/low"].item() == pytest.approx(1 / 2)


def test_g1_g2_batch_is_the_mean_over_sequences() -> None:
    batch = _batch([G1[0], G2[0]], [G1[1], G2[1]], [G1[2], G2[2]])
    # (-1.105171 + 0.904837) / 2 = -0.100167
    want = (-math.exp(0.1) + math.exp(-0.1)) / 2
    assert GMPO(batch).loss.item() == pytest.approx(want, rel=1e-12)
    assert want == pytest.approx(-0.100167, abs=5e-7)


def test_zero_advantage_gives_zero_whichever_side() -> None:
    batch = _batch([[0.9, -0.9]], [[True, True]], [0.0])
    out = GMPO(batch)
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    assert out.loss.item() == 0.0 and torch.equal(grad, torch.zeros_like(grad))
    assert out.metrics["clip/low"].item() == 0 and out.metrics["clip/high"].item() == 0


def test_equals_ppo_clips_sequence_form_when_every_token_ratio_is_1() -> None:
    batch = random_batch(7, 5, seed=31)
    batch = batch.replace(old_logp=batch.logp.detach().clone())
    gspo = Objective(policy={"name": "ppo_clip", "ratio": "sequence"}, aggregation="seq_mean_token_mean")
    got, want = GMPO(batch).loss, gspo(batch).loss
    (g_got,) = torch.autograd.grad(got, batch.logp)
    (g_want,) = torch.autograd.grad(want, batch.logp)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    torch.testing.assert_close(g_got, g_want, rtol=1e-12, atol=1e-15)


@settings(max_examples=40)
@given(
    deltas=st.lists(st.floats(-1.0, 1.0), min_size=4, max_size=4),
    lengths=st.lists(st.integers(1, 5), min_size=4, max_size=4),
    adv=st.lists(st.floats(-2.0, 2.0), min_size=4, max_size=4),
    eps=st.floats(0.05, 0.6),
)
def test_equals_gspo_when_a_sequences_tokens_share_one_log_ratio(
    deltas: list[float], lengths: list[int], adv: list[float], eps: float
) -> None:
    # With Δ_t = δ on every token, GMPO's R = exp(clip(δ)) = GSPO's clipped s with the ratio range
    # (e^-eps, e^eps): the same value and the same gradient.
    mask = torch.arange(5)[None, :] < torch.tensor(lengths)[:, None]
    old = torch.full((4, 5), -1.5, dtype=torch.float64)
    batch = PolicyBatch(
        logp=(old + torch.tensor(deltas, dtype=torch.float64)[:, None]).requires_grad_(),
        old_logp=old,
        mask=mask,
        advantages=torch.tensor(adv, dtype=torch.float64),
    )
    gmpo = Objective(
        policy={"name": "gmpo", "eps_low": eps, "eps_high": eps}, aggregation="seq_mean_token_mean"
    )
    gspo = Objective(
        policy={
            "name": "ppo_clip",
            "ratio": "sequence",
            "eps_low": 1 - math.exp(-eps),
            "eps_high": math.exp(eps) - 1,
        },
        aggregation="seq_mean_token_mean",
    )
    got, want = gmpo(batch).loss, gspo(batch).loss
    if any(abs(abs(d) - eps) < 1e-9 for d in deltas):
        return  # on the boundary the two round differently
    (g_got,) = torch.autograd.grad(got, batch.logp)
    (g_want,) = torch.autograd.grad(want, batch.logp)
    assert got.item() == pytest.approx(want.item(), rel=1e-12, abs=1e-15)
    torch.testing.assert_close(g_got, g_want, rtol=1e-10, atol=1e-15)


def test_per_token_advantages_are_averaged_per_sequence() -> None:
    batch = random_batch(5, 4, seed=32)
    token_adv = torch.randn(5, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    seq_adv = torch.where(batch.mask, token_adv, 0.0).sum(1) / batch.mask.sum(1)
    a = GMPO(batch.replace(advantages=token_adv)).loss
    b = GMPO(batch.replace(advantages=seq_adv)).loss
    assert a.item() == pytest.approx(b.item(), rel=1e-12)


def test_sequence_level_needs_seq_mean_token_mean() -> None:
    with pytest.raises(ConfigError, match=r"sequence-level loss .* Use aggregation='seq_mean_token_mean'"):
        Objective(policy="gmpo", aggregation="token_mean")


def test_gradcheck_float64() -> None:
    batch = random_batch(4, 3, seed=5, padding_nan=False)
    objective = Objective(
        policy={"name": "gmpo", "eps_low": 0.1, "eps_high": 0.2}, aggregation="seq_mean_token_mean"
    )
    logp = batch.logp.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: objective(batch.replace(logp=x)).loss, (logp,))


def test_parameter_ranges() -> None:
    with pytest.raises(ConfigError, match=r"eps_low=-0\.1"):
        build("gmpo", eps_low=-0.1)
    with pytest.raises(ConfigError, match=r"eps_high=inf"):
        build("gmpo", eps_high=float("inf"))
