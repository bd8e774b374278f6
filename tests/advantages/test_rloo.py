"""RLOO: hand-worked numbers and the identity with scaled mean-centring."""

import torch
from hypothesis import given, settings

from rlzoo.advantages import ESTIMATORS
from rlzoo.types import Groups
from tests.advantages.strategies import groups, make


def test_hand_worked() -> None:
    # [1, 0, 0, 1]: A_0 = 1 - mean(0, 0, 1) = 2/3, A_1 = 0 - mean(1, 0, 1) = -2/3
    # [3, 1, 2]:    A = [3 - 1.5, 1 - 2.5, 2 - 2] = [1.5, -1.5, 0]
    adv = ESTIMATORS.build("rloo")(make([[1, 0, 0, 1], [3, 1, 2, 2]], mask=[[True] * 4, [True, True, True, False]]))
    expected = torch.tensor([[2 / 3, -2 / 3, -2 / 3, 2 / 3], [1.5, -1.5, 0.0, 0.0]])
    torch.testing.assert_close(adv, expected, rtol=1e-6, atol=1e-7)


def test_group_of_one_gets_zero() -> None:
    assert ESTIMATORS.build("rloo")(make([[4.0, 2.0]], mask=[[True, False]])).tolist() == [[0.0, 0.0]]


@settings(max_examples=40)
@given(gs=groups(dtype=torch.float64))
def test_equals_k_over_k_minus_one_times_centred(gs: Groups) -> None:
    k = gs.mask.sum(1, keepdim=True).double()
    centred = ESTIMATORS.build("grpo", scale="none")(gs)
    expected = torch.where(k > 1, k / (k - 1).clamp_min(1), 0.0) * centred
    torch.testing.assert_close(ESTIMATORS.build("rloo")(gs), expected, rtol=1e-12, atol=1e-12)
