"""dppo_tv and dppo_kl: ALGORITHMS.md II.2's vector D1 (masks, verl's and prime-rl's values), the anchor,
the two surrogates, the cap, gradcheck."""

import math

import pytest
import torch

from rlzoo.errors import ConfigError
from rlzoo.losses import Objective, build
from rlzoo.losses.dppo import binary_kl
from rlzoo.types import PolicyBatch
from tests.losses.helpers import random_batch

# D1: q = μ(token), p = π(token), one advantage per token.
Q = [0.5, 0.5, 0.5, 0.5, 0.1]
P = [0.7, 0.6, 0.3, 0.3, 0.2]
A = [1.0, 1.0, -1.0, 1.0, 1.0]


def _d1() -> PolicyBatch:
    logp = torch.tensor([P], dtype=torch.float64).log().requires_grad_()
    return PolicyBatch(
        logp=logp,
        old_logp=torch.tensor([Q], dtype=torch.float64).log(),
        mask=torch.ones(1, 5, dtype=torch.bool),
        advantages=torch.tensor([A], dtype=torch.float64),
    )


def test_defaults() -> None:
    tv, kl = build("dppo_tv"), build("dppo_kl")
    assert (tv.delta_low, tv.delta_high, kl.delta_low, kl.delta_high) == (0.2, 0.2, 0.05, 0.05)
    for loss in (tv, kl):
        assert (loss.anchor, loss.surrogate, loss.cap, loss.kl_tau, loss.level) == (
            "rollout",
            "ratio",
            None,
            0.0,
            "token",
        )
        assert loss.uses_rollout_logp and not build(loss.component_name, anchor="old").uses_rollout_logp


def test_d1_tv_mask_and_verls_values() -> None:
    batch = _d1()
    verl = build("dppo_tv", delta_low=0.15, delta_high=0.15, surrogate="logp", cap=20.0)
    term = verl(batch)
    # r = p/q = [1.4, 1.2, 0.6, 0.6, 2.0]; p - q = [.2, .1, -.2, -.2, .1]
    # TV mask: token 0 (A > 0, +.2 > .15) and token 2 (A < 0, -.2 < -.15) are out: M = [0, 1, 0, 1, 1].
    # Token 4 (r = 2) stays, where PPO would clip it. verl: ℓ = -A sg(min(r, 20)) logp M
    want = [0.0, -1 * 1.2 * math.log(0.6), 0.0, -1 * 0.6 * math.log(0.3), -1 * 2.0 * math.log(0.2)]
    assert want == pytest.approx([0, 0.612991, 0, 0.722384, 3.218876], abs=5e-7)
    torch.testing.assert_close(term.loss, torch.tensor([want], dtype=torch.float64), rtol=1e-12, atol=0)
    assert term.metrics["clip/high"].item() == pytest.approx(0.2) and term.metrics[
        "clip/low"
    ].item() == pytest.approx(0.2)
    out = Objective(policy=verl, aggregation="token_mean")(batch)
    assert out.loss.item() == pytest.approx(sum(want) / 5, rel=1e-12)
    assert out.loss.item() == pytest.approx(0.910850, abs=5e-7)


@pytest.mark.parametrize("surrogate", ["ratio", "logp"])
@pytest.mark.parametrize("name", ["dppo_tv", "dppo_kl"])
def test_d1_gradient_is_the_same_for_both_surrogates_and_masks(name: str, surrogate: str) -> None:
    batch = _d1()
    delta = 0.15 if name == "dppo_tv" else 0.05
    loss = build(name, delta_low=delta, delta_high=delta, surrogate=surrogate, cap=20.0)
    total = Objective(policy=loss, aggregation={"name": "token_sum_const", "constant": 1.0})(batch).loss
    (grad,) = torch.autograd.grad(total, batch.logp)
    # ∂(Σℓ)/∂logp = -A r M = [0, -1.2, 0, -0.6, -2.0]
    torch.testing.assert_close(
        grad, torch.tensor([[0.0, -1.2, 0.0, -0.6, -2.0]], dtype=torch.float64), rtol=1e-12, atol=0
    )


def test_d1_binary_kl_and_its_mask() -> None:
    batch = _d1()
    d = binary_kl(batch.logp.detach(), batch.old_logp)
    by_hand = [
        q * math.log(q / p) + (1 - q) * math.log((1 - q + 1e-8) / (1 - p + 1e-8))
        for p, q in zip(P, Q, strict=True)
    ]
    assert by_hand == pytest.approx([0.087177, 0.020411, 0.087177, 0.087177, 0.036690], abs=5e-7)
    torch.testing.assert_close(d, torch.tensor([by_hand], dtype=torch.float64), rtol=1e-12, atol=0)
    # δ = 0.05: token 0 (A > 0, p > q, D > δ) and token 2 (A < 0, p < q, D > δ) are out; token 3 has D > δ
    # but A > 0 with p < q, so it stays: M = [0, 1, 0, 1, 1], the TV mask of D1.
    term = build("dppo_kl", surrogate="logp", cap=20.0)(batch)
    tv = build("dppo_tv", delta_low=0.15, delta_high=0.15, surrogate="logp", cap=20.0)(batch)
    torch.testing.assert_close(term.loss, tv.loss, rtol=0, atol=0)


def test_d1_prime_rl_loss_sum_with_the_kimi_term() -> None:
    batch = _d1()
    prime = build("dppo_tv", delta_low=0.15, delta_high=0.15, kl_tau=1e-3)
    total = Objective(policy=prime, aggregation={"name": "token_sum_const", "constant": 1.0})(batch).loss
    # -A r M summed: -(1.2 + 0.6 + 2.0) = -3.8; τ Σ (log r)² over every token, masked or not
    log_r_sq = sum(math.log(p / q) ** 2 for p, q in zip(P, Q, strict=True))
    assert log_r_sq == pytest.approx(1.148793, abs=5e-7)
    assert total.item() == pytest.approx(-3.8 + 1e-3 * log_r_sq, rel=1e-12)
    assert total.item() == pytest.approx(-3.798851, abs=5e-7)
    (grad,) = torch.autograd.grad(total, batch.logp)
    log_r = [math.log(p / q) for p, q in zip(P, Q, strict=True)]
    want = [
        m * -a * p / q + 2e-3 * lr for m, a, p, q, lr in zip([0, 1, 0, 1, 1], A, P, Q, log_r, strict=True)
    ]
    torch.testing.assert_close(grad, torch.tensor([want], dtype=torch.float64), rtol=1e-12, atol=0)


def test_cap_truncates_the_weight_and_keeps_the_gradient() -> None:
    batch = _d1()
    ratio = build("dppo_tv", delta_low=0.15, delta_high=0.15, cap=1.5)
    term = ratio(batch)
    # token 4: r = 2 capped at 1.5: value -1.5, gradient -1.5 (truncated IS, not zeroed like a clip)
    assert term.loss[0, 4].item() == pytest.approx(-1.5, rel=1e-12)
    assert term.loss[0, 1].item() == pytest.approx(-1.2, rel=1e-12)
    (grad,) = torch.autograd.grad(term.loss.sum(), batch.logp)
    torch.testing.assert_close(
        grad, torch.tensor([[0.0, -1.2, 0.0, -0.6, -1.5]], dtype=torch.float64), rtol=1e-12, atol=0
    )
    assert term.metrics["clip/cap"].item() == pytest.approx(0.2)


def test_zero_advantage_is_never_masked() -> None:
    batch = _d1().replace(advantages=torch.zeros(1, 5, dtype=torch.float64))
    term = build("dppo_tv", delta_low=0.01, delta_high=0.01)(batch)
    assert term.metrics["clip/low"].item() == 0 and term.metrics["clip/high"].item() == 0
    assert torch.equal(term.loss, torch.zeros_like(term.loss))


def test_rollout_anchor_reads_the_engine_logprobs_and_falls_back_to_old() -> None:
    d1 = _d1()
    # old_logp differs from the engine's: the rollout anchor must ignore it and give D1 again.
    batch = d1.replace(old_logp=d1.old_logp - 0.3, rollout_logp=d1.old_logp)
    spec = {"delta_low": 0.15, "delta_high": 0.15, "surrogate": "logp", "cap": 20.0}
    want = build("dppo_tv", **spec)(d1).loss  # d1 has no rollout_logp: μ = old_logp
    torch.testing.assert_close(build("dppo_tv", **spec)(batch).loss, want, rtol=0, atol=0)
    assert not torch.equal(build("dppo_tv", anchor="old", **spec)(batch).loss, want)  # reads old_logp
    assert Objective(policy="dppo_kl").needs_rollout_logp
    assert not Objective(policy={"name": "dppo_kl", "anchor": "old"}).needs_rollout_logp


@pytest.mark.parametrize("name", ["dppo_tv", "dppo_kl"])
def test_surrogates_differ_in_value_only(name: str) -> None:
    batch = random_batch(7, 5, seed=41)
    grads = []
    for surrogate in ("ratio", "logp"):
        objective = Objective(
            policy={"name": name, "surrogate": surrogate, "cap": 1.1}, aggregation="token_mean"
        )
        (grad,) = torch.autograd.grad(objective(batch).loss, batch.logp)
        grads.append(grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["dppo_tv", "dppo_kl"])
def test_gradcheck_float64(name: str) -> None:
    # The uncapped ratio surrogate with the Kimi term: the gradient is the derivative of the value
    # (the mask is piecewise constant).
    batch = random_batch(4, 3, seed=6, padding_nan=False)
    objective = Objective(policy={"name": name, "kl_tau": 0.1}, aggregation="seq_mean_token_mean")
    logp = batch.logp.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: objective(batch.replace(logp=x)).loss, (logp,))


def test_probability_collapse_keeps_the_tv_difference_bounded() -> None:
    # p → 0: r = e^-40 (a PPO ratio far outside any clip range), p - q ≈ -0.5, masked only for A < 0
    batch = PolicyBatch(
        logp=torch.tensor([[-40.0, -40.0]], dtype=torch.float64, requires_grad=True),
        old_logp=torch.tensor([[math.log(0.5)] * 2], dtype=torch.float64),
        mask=torch.ones(1, 2, dtype=torch.bool),
        advantages=torch.tensor([[1.0, -1.0]], dtype=torch.float64),
    )
    term = build("dppo_tv")(batch)
    assert term.metrics["clip/low"].item() == 0.5 and term.metrics["clip/high"].item() == 0.0
    assert torch.isfinite(term.loss).all()


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"delta_low": -0.1}, r"delta_low=-0\.1"),
        ({"delta_high": float("inf")}, "delta_high=inf"),
        ({"cap": 0.0}, r"cap=0\.0"),
        ({"kl_tau": -1e-3}, r"kl_tau=-0\.001"),
    ],
)
def test_parameter_ranges(params: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build("dppo_tv", **params)
