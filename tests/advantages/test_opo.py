"""OPO: the length-weighted baseline."""

import torch

from rlzoo.advantages import ESTIMATORS
from tests.advantages.strategies import make


def test_hand_worked() -> None:
    # r = [1, 0, 1], L = [2, 4, 6]: b = (2·1 + 4·0 + 6·1) / 12 = 2/3 -> A = [1/3, -2/3, 1/3]
    adv = ESTIMATORS.build("opo")(make([[1, 0, 1]], lengths=[[2, 4, 6]]))
    torch.testing.assert_close(adv, torch.tensor([[1 / 3, -2 / 3, 1 / 3]]), rtol=1e-6, atol=1e-7)


def test_equal_lengths_give_plain_mean_centring_and_invalid_lengths_do_not_count() -> None:
    # valid r = [3, 1] with L = [5, 5] (the invalid L = 100 is ignored): b = 2 -> [1, -1]
    gs = make([[3, 1, 9]], lengths=[[5, 5, 100]], mask=[[True, True, False]])
    assert ESTIMATORS.build("opo")(gs).tolist() == [[1.0, -1.0, 0.0]]


def test_all_zero_lengths_fall_back_to_the_plain_mean() -> None:
    assert ESTIMATORS.build("opo")(make([[3, 1]], lengths=[[0, 0]])).tolist() == [[1.0, -1.0]]


def test_all_equal_groups_and_groups_of_one_get_exactly_zero() -> None:
    gs = make([[0.1] * 3, [0.7, 0.2, 0.2]], lengths=[[3, 7, 11], [5, 1, 1]], mask=[[True] * 3, [True, False, False]])
    assert torch.equal(ESTIMATORS.build("opo")(gs), torch.zeros(2, 3))
