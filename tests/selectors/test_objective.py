"""Selectors inside the Objective: what they gate, what they leave alone, and what the trainer reads."""

import pytest
import torch
from jaxtyping import TypeCheckError

from rlzoo.errors import ConfigError, DataError
from rlzoo.losses import Objective
from rlzoo.types import PolicyBatch


def _batch(adv: list[float], entropy: list[list[float]], **extra: torch.Tensor) -> PolicyBatch:
    """On-policy (ratio 1, so ppo_clip's per-token loss is -A), float64, all tokens real."""
    h = torch.tensor(entropy, dtype=torch.float64)
    logp = torch.full(h.shape, -1.0, dtype=torch.float64, requires_grad=True)
    return PolicyBatch(
        logp=logp,
        old_logp=logp.detach().clone(),
        mask=torch.ones(h.shape, dtype=torch.bool),
        advantages=torch.tensor(adv, dtype=torch.float64),
        entropy=h,
        group_ids=torch.arange(len(adv)),
        **extra,
    )


def test_needs_flags() -> None:
    plain = Objective()
    assert not (plain.needs_entropy or plain.needs_entropy_threshold or plain.needs_rollout_logp)
    top = Objective(selectors=("top_entropy",))
    assert top.needs_entropy and top.needs_entropy_threshold and not top.needs_rollout_logp
    off = Objective(selectors=({"name": "off_policy_mask", "delta": 0.3},))
    assert off.needs_rollout_logp and not (off.needs_entropy or off.needs_entropy_threshold)
    assert off.selectors[0].delta == 0.3


def test_config_errors() -> None:
    # a bare string is refused (by the type check under pytest, by the Objective's own check otherwise)
    with pytest.raises((ConfigError, TypeCheckError), match=r"selectors"):
        Objective(selectors="top_entropy")
    with pytest.raises(ConfigError, match="2 selectors need an entropy threshold"):
        Objective(selectors=("top_entropy", {"name": "top_entropy", "rho": 0.5}))
    with pytest.raises(ConfigError, match="unknown token selector 'off_policy'; did you mean 'off_policy_mask'"):
        Objective(selectors=("off_policy",))
    with pytest.raises(ConfigError, match="no selector needs an entropy threshold"):
        Objective().entropy_threshold(torch.ones(3))


def test_top_entropy_gates_the_policy_and_entropy_terms_not_the_kl_nor_the_denominator() -> None:
    # E1 (rho = 0.4) over one sequence of 5 tokens: keep tokens 1 and 3 (tau = 1.4)
    batch = _batch([2.0], [[0.1, 2.0, 0.5, 3.0, 1.0]])
    batch = batch.replace(ref_logp=batch.old_logp - 0.5)  # k1 = logp - ref = 0.5 on every token
    out = Objective(selectors=({"name": "top_entropy", "rho": 0.4},), kl="k1", kl_coef=0.1, entropy_coef=0.01)(batch)
    # policy: (-2 - 2) / 5 (the denominator still counts all 5 tokens); kl: 0.5 (not masked);
    # entropy bonus over the kept tokens: (2 + 3) / 5 = 1
    assert out.metrics["loss/policy"].item() == pytest.approx(-0.8, rel=1e-12)
    assert out.metrics["loss/kl"].item() == pytest.approx(0.5, rel=1e-12)
    assert out.metrics["loss/entropy"].item() == pytest.approx(1.0, rel=1e-12)
    assert out.metrics["select/top_entropy/kept"].item() == pytest.approx(0.4)
    assert out.loss.item() == pytest.approx(-0.8 + 0.05 - 0.01, rel=1e-12)
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    # d/dlogp: policy -A/5 on the kept tokens, kl 0.1·1/5 on every token
    expected = torch.tensor([[0.02, -0.4 + 0.02, 0.02, -0.4 + 0.02, 0.02]], dtype=torch.float64)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-15)


def test_off_policy_mask_drops_a_stale_negative_sequence_in_the_loss() -> None:
    # O1: the engine's log-probs are 0.75 above logp on sequence 0 (A = -1): dropped; sequence 1 (A = +1) kept
    batch = _batch([-1.0, 1.0], [[1.0, 1.0], [1.0, 1.0]])
    batch = batch.replace(rollout_logp=torch.tensor([[0.0, -0.5], [0.0, -0.5]], dtype=torch.float64))
    out = Objective(selectors=("off_policy_mask",), entropy_coef=0.1)(batch)
    # token mean over all 4 tokens: (0 + 0 - 1 - 1) / 4; the entropy bonus is not masked: mean 1
    assert out.metrics["loss/policy"].item() == pytest.approx(-0.5, rel=1e-12)
    assert out.metrics["loss/entropy"].item() == pytest.approx(1.0, rel=1e-12)
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    torch.testing.assert_close(grad, torch.tensor([[0.0, 0.0], [-0.25, -0.25]], dtype=torch.float64), rtol=0, atol=0)
    # without rollout_logp the old (= current) log-probs give kl = 0: nothing is dropped
    assert Objective(selectors=("off_policy_mask",))(batch.replace(rollout_logp=None)).loss.item() == pytest.approx(0.0)


def test_selectors_combine_as_an_and_and_sit_before_the_floor() -> None:
    batch = _batch([-1.0, 1.0], [[0.1, 2.0], [3.0, 0.5]])
    batch = batch.replace(rollout_logp=torch.tensor([[0.0, 0.0], [0.0, 0.0]], dtype=torch.float64))
    objective = Objective(selectors=({"name": "top_entropy", "rho": 0.5}, "off_policy_mask"))
    out = objective(batch)
    # top_entropy keeps H >= quantile_0.5([0.1, 0.5, 2, 3]) = 1.25: (0, 1), (1, 0); the mask drops row 0
    assert out.metrics["loss/policy"].item() == pytest.approx(-0.25, rel=1e-12)
    floored = Objective(selectors=objective.selectors, loss_floor=0.0)(batch)
    assert floored.loss.item() == 0.0 and floored.metrics["loss/floored"].item() == 1.0


def test_the_step_threshold_is_what_the_trainer_hands_in() -> None:
    objective = Objective(selectors=({"name": "top_entropy", "rho": 0.4},))
    step = torch.tensor([0.1, 2.0, 0.5, 3.0, 1.0], dtype=torch.float64)
    tau = objective.entropy_threshold(step)
    assert tau.item() == pytest.approx(1.4, rel=1e-12)
    micro = _batch([1.0], [[2.0, 0.5]])  # alone, its own quantile (0.6 of [0.5, 2]) would be 1.4 too; use 2.5
    out = objective(micro.replace(entropy_threshold=torch.tensor(2.5, dtype=torch.float64)))
    assert out.metrics["select/top_entropy/kept"].item() == 0.0 and out.loss.item() == 0.0
    assert objective(micro.replace(entropy_threshold=tau)).metrics["select/top_entropy/kept"].item() == 0.5


def test_missing_entropy_is_a_data_error() -> None:
    batch = _batch([1.0], [[1.0]]).replace(entropy=None)
    with pytest.raises(DataError, match=r"needs batch\.entropy"):
        Objective(selectors=("top_entropy",))(batch)
