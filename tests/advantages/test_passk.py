"""GRPO pass@k: only the unique best completion gets r_max - r_second (over std + eps)."""

import math

import torch

from rlzoo.advantages import ESTIMATORS
from tests.advantages.strategies import make


def test_hand_worked() -> None:
    # r = [0.2, 0.9, 0.5, 0.1]: best 0.9, second 0.5, gap 0.4; mean 0.425,
    # Σ(r - mean)² = 0.050625 + 0.225625 + 0.005625 + 0.105625 = 0.3875, sample std = sqrt(0.3875/3)
    gs = make([[0.2, 0.9, 0.5, 0.1]])
    a = 0.4 / (math.sqrt(0.3875 / 3) + 1e-6)
    torch.testing.assert_close(ESTIMATORS.build("grpo_passk")(gs), torch.tensor([[0, a, 0, 0]]), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ESTIMATORS.build("grpo_passk", scale="none")(gs), torch.tensor([[0, 0.4, 0, 0]]), rtol=1e-6, atol=1e-7)


def test_ties_for_the_best_give_zero() -> None:
    assert ESTIMATORS.build("grpo_passk")(make([[1, 1, 0], [0.5, 0.5, 0.5]])).tolist() == [[0.0] * 3] * 2


def test_invalid_completions_are_not_candidates() -> None:
    # the invalid 5 would be best; among valid [1, 0, 0.5] the best is 1, second 0.5: gap 0.5
    gs = make([[1, 5, 0, 0.5]], mask=[[True, False, True, True]])
    assert ESTIMATORS.build("grpo_passk", scale="none")(gs).tolist() == [[0.5, 0.0, 0.0, 0.0]]
    single = make([[1, 5]], mask=[[True, False]])
    assert ESTIMATORS.build("grpo_passk")(single).tolist() == [[0.0, 0.0]]
