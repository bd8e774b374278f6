"""One suite for every registered estimator and filter, built with its defaults.

An estimator whose output for one group depends on other groups declares ``couples_groups = True``
(grpo with scale="batch", reinforce_pp, reinforce_pp_baseline, gpg); the group-independence test
reads that attribute, never the name.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlzoo.advantages import ESTIMATORS, FILTERS
from rlzoo.types import Groups
from tests.advantages.strategies import groups

ESTIMATOR_NAMES = ESTIMATORS.names()
FILTER_NAMES = FILTERS.names()
EXPECTED_COUPLED = {"gpg", "reinforce_pp", "reinforce_pp_baseline"}


def _replace_group(gs: Groups, row: int, rewards: torch.Tensor, mask: torch.Tensor) -> Groups:
    new_rewards, new_mask = gs.rewards.clone(), gs.mask.clone()
    new_rewards[row], new_mask[row] = rewards, mask
    return gs.replace(rewards=new_rewards, mask=new_mask)


def _permute_within(gs: Groups, row: int, perm: list[int]) -> Groups:
    def shuffled(x: torch.Tensor | None) -> torch.Tensor | None:
        if x is None:
            return None
        x = x.clone()
        x[row] = x[row][perm]
        return x

    return gs.replace(rewards=shuffled(gs.rewards), lengths=shuffled(gs.lengths), mask=shuffled(gs.mask), correct=shuffled(gs.correct))


def test_couples_groups_is_declared_by_the_batch_level_estimators() -> None:
    coupled = {name for name in ESTIMATOR_NAMES if getattr(ESTIMATORS.build(name), "couples_groups", False)}
    assert coupled == EXPECTED_COUPLED
    assert ESTIMATORS.build("grpo", scale="batch").couples_groups


@pytest.mark.parametrize("name", ESTIMATOR_NAMES)
@settings(max_examples=12)
@given(gs=groups())
def test_estimator_shape_dtype_finite_and_zero_where_invalid(name: str, gs: Groups) -> None:
    adv = ESTIMATORS.build(name)(gs)
    assert adv.shape == gs.rewards.shape
    assert adv.dtype == gs.rewards.dtype == torch.float32
    assert bool(torch.isfinite(adv).all())
    assert bool((adv[~gs.mask] == 0).all())
    assert not adv.requires_grad


@pytest.mark.parametrize("name", FILTER_NAMES)
@settings(max_examples=25)
@given(gs=groups())
def test_filter_shape_dtype_and_never_keeps_invalid(name: str, gs: Groups) -> None:
    filt = FILTERS.build(name)
    keep = filt(gs)
    assert keep.shape == gs.rewards.shape and keep.dtype == torch.bool
    assert not bool((keep & ~gs.mask).any())
    assert filt.mode == "drop"


@pytest.mark.parametrize("name", ESTIMATOR_NAMES + [f"filter:{n}" for n in FILTER_NAMES])
@settings(max_examples=10)
@given(gs=groups(min_n=2), data=st.data())
def test_changing_one_group_changes_no_other_group(name: str, gs: Groups, data: st.DataObject) -> None:
    component = FILTERS.build(name[7:]) if name.startswith("filter:") else ESTIMATORS.build(name)
    if getattr(component, "couples_groups", False):
        return
    row = data.draw(st.integers(0, gs.n - 1))
    new_rewards = torch.tensor(data.draw(st.lists(st.integers(-8, 8), min_size=gs.g, max_size=gs.g)), dtype=torch.float32)
    new_mask = torch.tensor(data.draw(st.lists(st.booleans(), min_size=gs.g, max_size=gs.g)))
    before, after = component(gs), component(_replace_group(gs, row, new_rewards, new_mask))
    others = [i for i in range(gs.n) if i != row]
    assert torch.equal(before[others], after[others])


@pytest.mark.parametrize("name", ESTIMATOR_NAMES + [f"filter:{n}" for n in FILTER_NAMES])
@settings(max_examples=10)
@given(gs=groups(dtype=torch.float64), data=st.data())
def test_permuting_a_group_permutes_its_outputs(name: str, gs: Groups, data: st.DataObject) -> None:
    component = FILTERS.build(name[7:]) if name.startswith("filter:") else ESTIMATORS.build(name)
    row = data.draw(st.integers(0, gs.n - 1))
    perm = data.draw(st.permutations(range(gs.g)))
    before, after = component(gs), component(_permute_within(gs, row, perm))
    expected = before.clone()
    expected[row] = before[row][perm]
    if expected.dtype == torch.bool:
        assert torch.equal(after, expected)
    else:
        torch.testing.assert_close(after, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ESTIMATOR_NAMES)
def test_every_estimator_ignores_whatever_sits_at_invalid_positions(name: str) -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.5, 7.0], [2.0, 2.0, 1.0, -3.0]])
    mask = torch.tensor([[True, True, True, False], [True, False, True, True]])
    gs = Groups(rewards, torch.tensor([[3, 5, 2, 9], [4, 4, 1, 6]]), mask, mask.clone(), torch.tensor([0.5, 1.0]))
    poisoned = gs.replace(rewards=torch.where(mask, rewards, torch.nan), lengths=torch.where(mask, gs.lengths, 1000))
    estimator = ESTIMATORS.build(name)
    assert torch.equal(estimator(gs), estimator(poisoned))


@pytest.mark.parametrize("shape", [(0, 4), (3, 0), (0, 0)])
def test_empty_steps_give_empty_outputs(shape: tuple[int, int]) -> None:
    gs = Groups(
        torch.zeros(shape), torch.zeros(shape, dtype=torch.long), None, torch.zeros(shape, dtype=torch.bool), torch.zeros(shape[0])
    )
    for name in ESTIMATOR_NAMES:
        assert torch.equal(ESTIMATORS.build(name)(gs), torch.zeros(shape)), name
    for name in FILTER_NAMES:
        assert torch.equal(FILTERS.build(name)(gs), torch.zeros(shape, dtype=torch.bool)), name
