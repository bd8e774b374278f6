"""ReMax: the greedy completion's reward as the baseline."""

import pytest
import torch

from rlzoo.advantages import ESTIMATORS
from rlzoo.errors import DataError
from tests.advantages.strategies import make


def test_hand_worked() -> None:
    # [1, 0] - 0.5 = [0.5, -0.5]; [0.5, 0.5] - 1 = [-0.5, -0.5]; invalid -> 0
    gs = make([[1, 0], [0.5, 0.5]], mask=[[True, True], [True, False]], greedy_rewards=torch.tensor([0.5, 1.0]))
    assert ESTIMATORS.build("remax")(gs).tolist() == [[0.5, -0.5], [-0.5, 0.0]]


def test_missing_greedy_rewards_is_a_clear_error() -> None:
    with pytest.raises(DataError, match=r"advantage estimator 'remax': needs groups.greedy_rewards"):
        ESTIMATORS.build("remax")(make([[1, 0]]))


def test_non_finite_greedy_reward_is_located() -> None:
    gs = make([[1, 0], [1, 1]], greedy_rewards=torch.tensor([0.0, 0.0]))
    gs.greedy_rewards[1] = float("inf")
    with pytest.raises(DataError, match=r"advantage estimator 'remax': greedy_rewards\[1\] is inf"):
        ESTIMATORS.build("remax")(gs)
