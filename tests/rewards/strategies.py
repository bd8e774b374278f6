"""Hypothesis strategies and builders for reward-shaper tests."""

import torch
from hypothesis import strategies as st

from rlzoo.types import Groups


def make_groups(rewards, lengths, correct=None, mask=None, dtype=torch.float64) -> Groups:
    return Groups(
        torch.tensor(rewards, dtype=dtype),
        torch.tensor(lengths, dtype=torch.long),
        mask=None if mask is None else torch.tensor(mask, dtype=torch.bool),
        correct=None if correct is None else torch.tensor(correct, dtype=torch.bool),
    )


@st.composite
def group_lists(draw, max_n: int = 4, max_g: int = 6, max_length: int = 40):
    """(rewards, lengths, correct, mask) as lists of lists, one inner list per group."""
    n = draw(st.integers(1, max_n))
    g = draw(st.integers(1, max_g))

    def grid(elements):
        return draw(st.lists(st.lists(elements, min_size=g, max_size=g), min_size=n, max_size=n))

    rewards = grid(st.floats(-3, 3, allow_nan=False, allow_infinity=False))
    lengths = grid(st.integers(0, max_length))
    correct = grid(st.booleans())
    mask = grid(st.booleans())
    return rewards, lengths, correct, mask
