"""Aggregations: hand-worked values, the loop oracle, and micro-batch split invariance."""

import functools
import operator

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlzoo.errors import ConfigError, DataError
from rlzoo.losses import AGGREGATIONS, Objective, build_aggregation
from rlzoo.types import LossTotals
from tests.losses.helpers import aggregation_spec, random_batch, rows, splits
from tests.losses.oracles import aggregate

# Three sequences: [1, 2, 3] and [4, 5] in group 0, [6] in group 1; NaN on padding.
VALUES = torch.tensor(
    [[1.0, 2.0, 3.0], [4.0, 5.0, torch.nan], [6.0, torch.nan, torch.nan]], dtype=torch.float64
)
MASK = torch.tensor([[True, True, True], [True, True, False], [True, False, False]])
GROUPS = torch.tensor([0, 0, 1])
TOTALS = LossTotals(
    tokens=torch.tensor(6.0, dtype=torch.float64),
    sequences=torch.tensor(3.0, dtype=torch.float64),
    group_tokens=torch.tensor([5.0, 1.0], dtype=torch.float64),
)

HAND = {
    "token_mean": (1 + 2 + 3 + 4 + 5 + 6) / 6,  # 21 / 6 = 3.5
    "seq_mean_token_mean": ((1 + 2 + 3) / 3 + (4 + 5) / 2 + 6) / 3,  # (2 + 4.5 + 6) / 3
    "seq_mean_token_sum": (6 + 9 + 6) / 3,  # 7
    "seq_sum_const": 21 / (3 * 7.0),  # C = 7 (aggregation_spec)
    "token_sum_const": 21 / 7.0,  # verl's seq-mean-token-sum-norm: over C only, not #sequences too
    "group_token_mean": ((1 + 2 + 3 + 4 + 5) / 5 + 6 / 1) / 2,  # (3 + 6) / 2 = 4.5
}


def test_every_aggregation_has_a_hand_worked_value() -> None:
    assert sorted(HAND) == AGGREGATIONS.names()


@pytest.mark.parametrize("name", sorted(HAND))
def test_hand_worked_values(name: str) -> None:
    agg = build_aggregation(aggregation_spec(name))
    assert agg(VALUES, MASK, TOTALS, GROUPS).item() == pytest.approx(HAND[name], rel=1e-12, abs=0)


@pytest.mark.parametrize("name", AGGREGATIONS.names())
def test_matches_loop_oracle_and_nan_padding_gets_zero_gradient(name: str) -> None:
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(7, 5, generator=g) < 0.7
    mask[2] = False  # a sequence with nothing counted
    values = torch.where(
        mask, torch.randn(7, 5, generator=g, dtype=torch.float64), torch.inf
    ).requires_grad_()
    group_ids = torch.tensor([0, 1, 1, 2, 0, 2, 2])
    per_seq = mask.sum(1).double()
    totals = LossTotals(
        per_seq.sum(),
        (per_seq > 0).sum().double(),
        torch.zeros(3, dtype=torch.float64).index_add(0, group_ids, per_seq),
    )
    agg = build_aggregation(aggregation_spec(name))
    got = agg(values, mask, totals, group_ids)
    (grad,) = torch.autograd.grad(got, values)
    want = aggregate(torch.where(mask, values, 0.0), mask, group_ids, name, constant=7.0)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    assert torch.equal(grad[~mask], torch.zeros_like(grad[~mask]))
    assert torch.isfinite(grad).all()


def test_nothing_counted_gives_zero_not_nan() -> None:
    mask = torch.zeros(2, 3, dtype=torch.bool)
    zero = torch.tensor(0.0, dtype=torch.float64)
    totals = LossTotals(zero, zero, torch.zeros(1, dtype=torch.float64))
    for name in AGGREGATIONS.names():
        out = build_aggregation(aggregation_spec(name))(
            torch.ones(2, 3, dtype=torch.float64), mask, totals, torch.zeros(2, dtype=torch.long)
        )
        assert out.item() == 0.0


def test_seq_sum_const_needs_a_positive_constant() -> None:
    with pytest.raises(ConfigError, match="missing required parameter 'constant'"):
        build_aggregation("seq_sum_const")
    with pytest.raises(ConfigError, match=r"constant=0\.0 must be"):
        build_aggregation({"name": "seq_sum_const", "constant": 0})


def test_token_sum_const_is_verls_seq_mean_token_sum_norm_and_needs_a_constant() -> None:
    assert build_aggregation({"name": "seq_mean_token_sum_norm", "constant": 4}) == build_aggregation(
        {"name": "token_sum_const", "constant": 4}
    )
    with pytest.raises(ConfigError, match="missing required parameter 'constant'"):
        build_aggregation("token_sum_const")
    with pytest.raises(ConfigError, match=r"constant=-1\.0 must be"):
        build_aggregation({"name": "token_sum_const", "constant": -1.0})
    # Twice the sequences, twice the loss (seq_sum_const would stay the same): no count in the denominator.
    agg = build_aggregation({"name": "token_sum_const", "constant": 7.0})
    double = LossTotals(TOTALS.tokens * 2, TOTALS.sequences * 2, TOTALS.group_tokens * 2)
    twice = torch.cat([VALUES, VALUES]), torch.cat([MASK, MASK]), double, torch.cat([GROUPS, GROUPS])
    assert agg(*twice).item() == pytest.approx(2 * 21 / 7.0, rel=1e-12, abs=0)


def test_group_token_mean_needs_group_ids_in_range() -> None:
    agg = build_aggregation("group_token_mean")
    with pytest.raises(DataError, match=r"needs batch\.group_ids"):
        agg(VALUES, MASK, TOTALS, None)
    with pytest.raises(DataError, match=r"range\(2\)"):
        agg(VALUES, MASK, TOTALS, torch.tensor([0, 0, 2]))


def _loss_and_grad(objective: Objective, batch) -> tuple[torch.Tensor, torch.Tensor]:
    loss = objective(batch).loss
    (grad,) = torch.autograd.grad(loss, batch.logp)
    return loss.detach(), grad


@pytest.mark.parametrize("name", AGGREGATIONS.names())
@settings(max_examples=15)
@given(data=st.data())
def test_micro_batch_split_gives_the_full_batch_loss_and_gradient(name: str, data: st.DataObject) -> None:
    b = data.draw(st.integers(2, 9))
    batch = random_batch(
        b, data.draw(st.integers(1, 6)), seed=data.draw(st.integers(0, 10_000)), groups=3, zero_adv=True
    )
    objective = Objective(
        aggregation=aggregation_spec(name),
        kl="k3",
        kl_coef=0.1,
        entropy_coef=0.01,
        mask_zero_advantage=data.draw(st.booleans()),
    )
    full_loss, full_grad = _loss_and_grad(objective, batch)
    parts = [rows(batch, index) for index in data.draw(splits(b))]
    totals = functools.reduce(operator.add, (objective.totals(mb, 3) for mb in parts))
    loss = sum(objective(mb.replace(totals=totals)).loss for mb in parts)
    (grad,) = torch.autograd.grad(loss, batch.logp)
    assert loss.item() == pytest.approx(full_loss.item(), abs=1e-6)
    torch.testing.assert_close(
        torch.where(batch.mask, grad, 0.0), torch.where(batch.mask, full_grad, 0.0), rtol=0, atol=1e-6
    )
    assert torch.isfinite(grad).all()
