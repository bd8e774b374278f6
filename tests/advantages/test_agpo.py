"""AGPO v1: hand-worked numbers and the ±1 rule for all-equal groups."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlzoo.advantages import ESTIMATORS
from rlzoo.types import Groups
from tests.advantages.strategies import groups, make


def test_hand_worked() -> None:
    # all 1 -> +1; all 0 -> -1; all 0.5 -> 0; mixed [1, 0, 1, 0] -> GRPO ±0.5/(sqrt(1/3) + 1e-6)
    adv = ESTIMATORS.build("agpo")(make([[1, 1, 1, 1], [0, 0, 0, 0], [0.5] * 4, [1, 0, 1, 0]]))
    a = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    expected = torch.tensor([[1.0] * 4, [-1.0] * 4, [0.0] * 4, [a, -a, a, -a]])
    torch.testing.assert_close(adv, expected, rtol=1e-6, atol=1e-7)


def test_plus_minus_one_rewards_with_reward_min_minus_one() -> None:
    # rewards in {-1, +1}: all -1 is "all wrong" once reward_min = -1; all 0 is then not special
    adv = ESTIMATORS.build("agpo", reward_min=-1.0)(make([[-1, -1, -1], [0, 0, 0], [1, 1, 1]]))
    assert adv.tolist() == [[-1.0] * 3, [0.0] * 3, [1.0] * 3]


def test_invalid_completions_do_not_count_and_stay_zero() -> None:
    # valid rewards of group 0 are all 1 (the 0 is invalid): +1 on the valid ones only
    gs = make([[1, 0, 1], [0, 1, 0]], mask=[[True, False, True], [True, False, True]])
    assert ESTIMATORS.build("agpo")(gs).tolist() == [[1.0, 0.0, 1.0], [-1.0, 0.0, -1.0]]


def test_groups_of_one_follow_the_singleton_policy_not_the_rule() -> None:
    gs = make([[1, 5], [0, 5]], mask=[[True, False], [True, False]])
    assert ESTIMATORS.build("agpo")(gs).tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert ESTIMATORS.build("agpo", singleton="passthrough")(gs).tolist() == [[1.0, 0.0], [0.0, 0.0]]


@settings(max_examples=40)
@given(gs=groups(), pos=st.sampled_from([1.0, 0.25]), neg=st.sampled_from([-1.0, -2.0]))
def test_rule_property(gs: Groups, pos: float, neg: float) -> None:
    adv = ESTIMATORS.build("agpo", pos=pos, neg=neg)(gs)
    grpo = ESTIMATORS.build("grpo")(gs)
    for i in range(gs.n):
        valid = gs.rewards[i][gs.mask[i]]
        if len(valid) >= 2 and bool((valid == valid[0]).all()):
            fixed = pos if valid[0] == 1 else neg if valid[0] == 0 else 0.0
            assert torch.equal(adv[i], torch.where(gs.mask[i], fixed, 0.0))
        else:
            assert torch.equal(adv[i], grpo[i])


def test_declares_its_all_equal_rule_and_grpo_does_not() -> None:
    assert ESTIMATORS.build("agpo").acts_on_all_equal_groups
    assert not getattr(ESTIMATORS.build("grpo"), "acts_on_all_equal_groups", False)
