"""binary_correct: correctness mapped to two values."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlzoo.rewards import build_shaper
from tests.rewards import oracles
from tests.rewards.strategies import group_lists, make_groups


def test_binary_correct_hand_worked() -> None:
    groups = make_groups([[0.3, 0.7, 5.0]], [[1, 2, 3]], correct=[[1, 0, 1]], mask=[[1, 1, 0]])
    # correct -> +1, wrong -> -1, the invalid third one keeps its 5
    assert build_shaper("binary_correct")(groups).rewards.tolist() == [[1.0, -1.0, 5.0]]
    # the {0, 1} of Reinforce-Rej's released code
    assert build_shaper("binary_correct", neg=0.0)(groups).rewards.tolist() == [[1.0, 0.0, 5.0]]


def test_binary_correct_rejects_non_finite_values() -> None:
    with pytest.raises(ValueError, match=r"reward shaper 'binary_correct': pos=inf must be finite"):
        build_shaper("binary_correct", pos=float("inf"))


@settings(max_examples=30)
@given(group_lists(), st.floats(-5, 5), st.floats(-5, 5))
def test_binary_correct_matches_oracle(data, pos, neg) -> None:
    rewards, lengths, correct, mask = data
    out = build_shaper("binary_correct", pos=pos, neg=neg)(make_groups(rewards, lengths, correct, mask))
    expected = oracles.binary_correct(rewards, correct, mask, pos, neg)
    torch.testing.assert_close(out.rewards, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=0)
