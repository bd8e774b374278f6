"""Reinforce (A = r) and RAFT (A = max(r, 0)): hand-worked numbers."""

import torch

from rlzoo.advantages import ESTIMATORS
from tests.advantages.strategies import make


def test_reinforce_is_the_reward() -> None:
    gs = make([[1, -1, 0.5], [2, float("nan"), -3]], mask=[[True, True, True], [True, False, True]])
    assert ESTIMATORS.build("reinforce")(gs).tolist() == [[1.0, -1.0, 0.5], [2.0, 0.0, -3.0]]


def test_raft_keeps_the_positive_part() -> None:
    # max(r, 0): [1, -1, 0.5] -> [1, 0, 0.5]
    gs = make([[1, -1, 0.5], [2, float("nan"), -3]], mask=[[True, True, True], [True, False, True]])
    assert ESTIMATORS.build("raft")(gs).tolist() == [[1.0, 0.0, 0.5], [2.0, 0.0, 0.0]]


def test_reinforce_output_does_not_alias_the_rewards() -> None:
    gs = make([[1, 0]])
    ESTIMATORS.build("reinforce")(gs).add_(5)
    assert torch.equal(gs.rewards, torch.tensor([[1.0, 0.0]]))
