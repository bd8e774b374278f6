"""GPG: mean-centred advantages times α = B / (B - M)."""

import torch

from rlzoo.advantages import ESTIMATORS
from tests.advantages.strategies import make


def test_hand_worked() -> None:
    # B = 8 valid, M = 4 in the all-equal group: α = 8/4 = 2
    # group 0: mean 0.25 -> 2·[0.75, -0.25, -0.25, -0.25] = [1.5, -0.5, -0.5, -0.5]; group 1: 0
    adv = ESTIMATORS.build("gpg")(make([[1, 0, 0, 0], [1, 1, 1, 1]]))
    assert adv.tolist() == [[1.5, -0.5, -0.5, -0.5], [0.0] * 4]


def test_invalid_completions_and_groups_of_one_in_b_and_m() -> None:
    # valid: group 0 [1, 0] (informative), group 1 [3] (one: counts in M), invalid ones in neither
    # B = 3, M = 1, α = 3/2; group 0: mean 0.5 -> 1.5·[0.5, -0.5]
    gs = make([[1, 0, 7], [3, 9, 9]], mask=[[True, True, False], [True, False, False]])
    assert ESTIMATORS.build("gpg")(gs).tolist() == [[0.75, -0.75, 0.0], [0.0, 0.0, 0.0]]


def test_everything_degenerate_gives_zero() -> None:
    assert torch.equal(ESTIMATORS.build("gpg")(make([[1, 1], [0, 0]])), torch.zeros(2, 2))


def test_std_normalisation() -> None:
    # scale="group": [1, 0] has sample std sqrt(0.5); α = 2 (the other group is all-equal)
    adv = ESTIMATORS.build("gpg", scale="group")(make([[1, 0], [1, 1]]))
    a = 2 * 0.5 / (0.5**0.5 + 1e-6)
    torch.testing.assert_close(adv, torch.tensor([[a, -a], [0.0, 0.0]]), rtol=1e-6, atol=1e-7)
