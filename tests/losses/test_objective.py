"""Objective: composition rules, the KL and entropy terms, AGPO's zero-advantage mask and loss floor."""

import dataclasses
import functools
import math
import operator
import typing

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlzoo.errors import ConfigError, DataError
from rlzoo.losses import Objective, build, build_aggregation
from rlzoo.types import PolicyBatch
from tests.losses.helpers import group_splits, random_batch, rows


def _on_policy(adv: list[float], tokens: int = 2, **extra: torch.Tensor) -> PolicyBatch:
    """On-policy sequences of ``tokens`` tokens (ratio 1, so ppo_clip's loss is -A per token)."""
    logp = torch.full((len(adv), tokens), -1.0, dtype=torch.float64, requires_grad=True)
    return PolicyBatch(
        logp=logp,
        old_logp=logp.detach().clone(),
        mask=torch.ones(len(adv), tokens, dtype=torch.bool),
        advantages=torch.tensor(adv, dtype=torch.float64),
        group_ids=torch.arange(len(adv)),
        **extra,
    )


# -- composition rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "aggregation",
    ["token_mean", "seq_mean_token_sum", {"name": "seq_sum_const", "constant": 8}, "group_token_mean"],
)
def test_sequence_level_loss_rejects_length_weighted_aggregations(aggregation: object) -> None:
    with pytest.raises(ConfigError, match=r"sequence-level loss .* Use aggregation='seq_mean_token_mean'"):
        Objective(policy="gspo", aggregation=aggregation)
    with pytest.raises(ConfigError, match="sequence-level"):
        Objective(policy={"name": "sapo", "ratio": "sequence"}, aggregation=aggregation)


@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum"])
def test_group_level_loss_needs_group_token_mean(aggregation: str) -> None:
    with pytest.raises(ConfigError, match=r"group-level loss .* Use aggregation='group_token_mean'"):
        Objective(policy="gvpo", aggregation=aggregation)


def test_combinations_that_make_sense_build() -> None:
    Objective(policy="gspo", aggregation="seq_mean_token_mean", kl="k3", kl_coef=0.04)
    Objective(policy="gvpo", aggregation="group_token_mean")
    Objective(policy={"name": "cispo", "ratio": "sequence"}, aggregation="token_mean")  # token-level
    Objective(
        policy={"name": "ppo_clip", "eps_high": 0.28},
        aggregation="group_token_mean",
        loss_floor=0.0,
        floor_scope="group",
    )
    built = Objective(
        policy=build("reinforce"), aggregation=build_aggregation({"name": "seq_sum_const", "constant": 512})
    )
    assert built.aggregation.constant == 512.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kl_coef": 0.04}, "kl_coef=0.04 needs a KL estimator"),
        ({"kl": "k3"}, "kl_coef=0.0 with kl='k3' adds nothing"),
        ({"kl": "k3", "kl_coef": -0.1}, "kl_coef=-0.1 must be"),
        ({"entropy_coef": float("nan")}, "entropy_coef=nan"),
        ({"floor_scope": "group"}, "floor_scope='group' only matters with a loss_floor"),
        ({"loss_floor": float("inf")}, "loss_floor=inf"),
        (
            {"policy": "gvpo", "aggregation": "group_token_mean", "mask_zero_advantage": True},
            "does not use advantages",
        ),
        ({"policy": "ppo"}, "unknown policy loss 'ppo'; did you mean"),
        ({"aggregation": "token_sum"}, "unknown loss aggregation"),
    ],
)
def test_config_errors_say_what_to_change(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Objective(**kwargs)


def test_needs_flags() -> None:
    plain = Objective()
    assert not (plain.needs_ref_logp or plain.needs_whole_groups or plain.needs_entropy)
    assert Objective(kl="k1", kl_coef=0.1).needs_ref_logp
    assert Objective(entropy_coef=0.01).needs_entropy
    assert Objective(policy="gvpo", aggregation="group_token_mean").needs_whole_groups
    assert Objective(loss_floor=0.0, floor_scope="group").needs_whole_groups
    # per-group normalisers come from the totals: group_token_mean needs ids, not whole groups
    assert not Objective(aggregation="group_token_mean").needs_whole_groups
    assert not Objective(loss_floor=0.0).needs_whole_groups


# -- totals, KL and entropy -------------------------------------------------------------------


def test_totals_hand_counted() -> None:
    batch = _on_policy([1.0, 0.0, -1.0], tokens=3).replace(
        mask=torch.tensor([[True, True, False], [True, True, True], [False, False, False]]),
        group_ids=torch.tensor([2, 0, 2]),
    )
    totals = Objective().totals(batch, 4)
    assert (totals.tokens.item(), totals.sequences.item()) == (5.0, 2.0)  # the empty sequence does not count
    assert totals.group_tokens.tolist() == [3.0, 0.0, 2.0, 0.0]
    assert totals.groups.item() == 2.0
    masked = Objective(mask_zero_advantage=True).totals(batch, 4)  # sequence 1 has A = 0
    assert (masked.tokens.item(), masked.sequences.item(), masked.group_tokens.tolist()) == (
        2.0,
        1.0,
        [0.0, 0.0, 2.0, 0.0],
    )
    with pytest.raises(DataError, match=r"group_ids\[0\] = 2 is outside range\(num_groups=2\)"):
        Objective().totals(batch, 2)


def test_kl_and_entropy_terms_hand_worked() -> None:
    batch = _on_policy([1.0, -0.5])
    batch = batch.replace(ref_logp=batch.old_logp - 0.2, entropy=torch.full((2, 2), 2.0, dtype=torch.float64))
    out = Objective(kl="k1", kl_coef=0.5, entropy_coef=0.1)(batch)
    # policy: token mean of -A = (-1 - 1 + 0.5 + 0.5) / 4 = -0.25; k1 = logp - ref = 0.2; entropy 2
    assert out.metrics["loss/policy"].item() == pytest.approx(-0.25, rel=1e-12)
    assert out.metrics["loss/kl"].item() == pytest.approx(0.2, rel=1e-12)
    assert out.metrics["loss/entropy"].item() == pytest.approx(2.0, rel=1e-12)
    assert out.metrics["entropy/mean"].item() == pytest.approx(2.0, rel=1e-12)
    assert out.loss.item() == pytest.approx(-0.25 + 0.5 * 0.2 - 0.1 * 2.0, rel=1e-12)
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    # d/dlogp: (-A + 0.5 * 1) / 4 (k1's gradient is 1)
    torch.testing.assert_close(
        grad, torch.tensor([[-0.5 / 4] * 2, [1.0 / 4] * 2], dtype=torch.float64), rtol=1e-12, atol=0
    )


def test_missing_inputs_are_data_errors() -> None:
    with pytest.raises(DataError, match=r"needs batch\.ref_logp"):
        Objective(kl="k3", kl_coef=0.1)(_on_policy([1.0]))
    with pytest.raises(DataError, match=r"needs batch\.entropy"):
        Objective(entropy_coef=0.1)(_on_policy([1.0]))


# -- AGPO v2/v3: zero-advantage mask and loss floor ------------------------------------------


def test_mask_zero_advantage_leaves_the_denominator() -> None:
    batch = _on_policy([1.0, 0.0])
    # without the mask: (-1 - 1 + 0 + 0) / 4; with it the A = 0 tokens leave the denominator: -2 / 2
    assert Objective()(batch).loss.item() == pytest.approx(-0.5, rel=1e-12)
    out = Objective(mask_zero_advantage=True)(batch)
    assert out.loss.item() == pytest.approx(-1.0, rel=1e-12)
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    torch.testing.assert_close(
        grad, torch.tensor([[-0.5, -0.5], [0.0, 0.0]], dtype=torch.float64), rtol=0, atol=0
    )


def test_loss_floor_per_micro_batch() -> None:
    batch = _on_policy([1.0, -0.5])
    out = Objective(loss_floor=0.0)(batch)
    # token mean -0.25 < 0: floored to 0, no gradient
    assert out.loss.item() == 0.0
    assert out.metrics["loss/floored"].item() == 1.0
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    assert torch.equal(grad, torch.zeros_like(grad))


def test_loss_floor_per_group() -> None:
    batch = _on_policy([1.0, -0.5])
    out = Objective(loss_floor=0.0, floor_scope="group")(batch)
    # group 0 contributes -2/4 -> floored to 0; group 1 contributes (0.5 + 0.5)/4 = 0.25
    assert out.loss.item() == pytest.approx(0.25, rel=1e-12)
    assert out.metrics["loss/floored"].item() == 0.5
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    torch.testing.assert_close(
        grad, torch.tensor([[0.0, 0.0], [0.125, 0.125]], dtype=torch.float64), rtol=0, atol=0
    )
    # a floor of 0.1 applies to each group's weighted mean: max(-0.5, 0.1 * 0.5) + max(0.25, 0.1 * 0.5)
    assert Objective(loss_floor=0.1, floor_scope="group")(batch).loss.item() == pytest.approx(
        0.05 + 0.25, rel=1e-12
    )


def test_loss_floor_at_a_tie_keeps_the_gradient_like_clamp() -> None:
    batch = _on_policy([1.0, -1.0])  # the loss is exactly 0
    out = Objective(loss_floor=0.0)(batch)
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    torch.testing.assert_close(
        grad, torch.tensor([[-0.25, -0.25], [0.25, 0.25]], dtype=torch.float64), rtol=0, atol=0
    )


def test_micro_batch_floor_depends_on_the_split_as_documented() -> None:
    batch = _on_policy([1.0, -0.5])
    objective = Objective(loss_floor=0.0)
    totals = objective.totals(batch, 2)
    parts = [rows(batch, torch.tensor([i])).replace(totals=totals) for i in range(2)]
    # whole batch: max(-0.25, 0) = 0; split: max(-0.5, 0) + max(0.25, 0) = 0.25
    assert objective(batch).loss.item() == 0.0
    assert sum(objective(p).loss for p in parts).item() == pytest.approx(0.25, rel=1e-12)


def test_group_floor_rejects_a_split_group() -> None:
    batch = _on_policy([1.0, -0.5]).replace(group_ids=torch.tensor([0, 0]))
    objective = Objective(loss_floor=0.0, floor_scope="group")
    totals = objective.totals(batch, 1)
    with pytest.raises(DataError, match="group 0 has 2 of its 4 counted tokens"):
        objective(rows(batch, torch.tensor([0])).replace(totals=totals))


@settings(max_examples=20)
@given(data=st.data())
def test_group_floor_is_split_invariant_over_whole_groups(data: st.DataObject) -> None:
    batch = random_batch(data.draw(st.integers(2, 9)), 4, seed=data.draw(st.integers(0, 10_000)), groups=3)
    objective = Objective(
        aggregation="seq_mean_token_mean", loss_floor=0.0, floor_scope="group", kl="k2", kl_coef=0.1
    )
    full = objective(batch).loss
    (full_grad,) = torch.autograd.grad(full, batch.logp)
    parts = [rows(batch, index) for index in data.draw(group_splits(batch.group_ids))]
    totals = functools.reduce(operator.add, (objective.totals(p, 3) for p in parts))
    loss = sum(objective(p.replace(totals=totals)).loss for p in parts)
    (grad,) = torch.autograd.grad(loss, batch.logp)
    assert loss.item() == pytest.approx(full.item(), abs=1e-6)
    torch.testing.assert_close(
        torch.where(batch.mask, grad, 0.0), torch.where(batch.mask, full_grad, 0.0), rtol=0, atol=1e-6
    )


# -- KL estimators that need the old log-probs (importance-weighted, DeepSeek-V3.2) -----------


@dataclasses.dataclass(frozen=True)
class _RecordingKL:
    """A stand-in estimator with ``needs_old_logp``: r·k1 with r = exp(logp - old), and what it was given."""

    needs_old_logp: typing.ClassVar[bool] = True
    component_kind: typing.ClassVar[str] = "KL estimator"
    component_name: typing.ClassVar[str] = "recording_iw"
    calls: list = dataclasses.field(default_factory=list, compare=False)

    def __call__(self, logp: torch.Tensor, ref_logp: torch.Tensor, *, old_logp: torch.Tensor) -> torch.Tensor:
        self.calls.append((logp.detach().clone(), ref_logp.clone(), old_logp.clone()))
        return (logp - old_logp).exp() * (logp - ref_logp)


def test_an_estimator_needing_old_logp_gets_them_masked_and_detached() -> None:
    logp = torch.tensor([[-1.5, torch.nan]], dtype=torch.float64, requires_grad=True)
    batch = PolicyBatch(
        logp=logp,
        old_logp=torch.tensor([[-1.2, torch.nan]], dtype=torch.float64),
        ref_logp=torch.tensor([[-1.0, torch.nan]], dtype=torch.float64),
        mask=torch.tensor([[True, False]]),
        advantages=torch.zeros(1, dtype=torch.float64),
    )
    kl = _RecordingKL()
    out = Objective(kl=kl, kl_coef=1.0)(batch)
    ((seen_logp, seen_ref, seen_old),) = kl.calls
    assert seen_logp.tolist() == [[-1.5, 0.0]] and seen_ref.tolist() == [[-1.0, 0.0]] and seen_old.tolist() == [[-1.2, 0.0]]
    assert not seen_old.requires_grad
    assert out.metrics["loss/kl"].item() == pytest.approx(math.exp(-0.3) * -0.5, rel=1e-12)


def test_k3_iw_through_the_objective_vector_k1() -> None:
    """ALGORITHMS.md II.6 K1 (ref -1, logp -1.5, old -1.2) through the Objective, the ratio not detached."""
    logp = torch.tensor([[-1.5, -1.0]], dtype=torch.float64, requires_grad=True)
    batch = PolicyBatch(
        logp=logp,
        old_logp=torch.tensor([[-1.2, -1.0]], dtype=torch.float64),
        ref_logp=torch.tensor([[-1.0, -1.0]], dtype=torch.float64),
        mask=torch.tensor([[True, True]]),
        advantages=torch.zeros(1, dtype=torch.float64),
    )
    out = Objective(kl="k3_iw", kl_coef=1.0)(batch)  # token mean over 2 tokens; the second has KL 0
    assert out.metrics["loss/kl"].item() == pytest.approx(0.110175 / 2, abs=5e-7)
    (grad,) = torch.autograd.grad(out.loss, logp)
    assert grad[0, 0].item() == pytest.approx(-0.370409 / 2, abs=5e-7)
    # plain k3 would be called without old_logp and differ
    plain = Objective(kl="k3", kl_coef=1.0)(batch)
    assert plain.metrics["loss/kl"].item() == pytest.approx(0.148721 / 2, abs=5e-7)
