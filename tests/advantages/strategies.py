"""Hypothesis strategies for ``Groups`` (test helpers only)."""

import torch
from hypothesis import strategies as st

from rlzoo.types import Groups

# Rewards on a coarse binary grid: every sum of a group is exact, so float32 results can be compared
# with float64 oracles at tight tolerances; {0, 1} makes all-equal groups common.
GRID = st.integers(-8, 8).map(lambda k: k / 2)
BINARY = st.sampled_from([0.0, 1.0])
FINE = st.integers(-8000, 8000).map(lambda k: k / 64)  # for float64 inputs


@st.composite
def groups(
    draw: st.DrawFn,
    *,
    dtype: torch.dtype = torch.float32,
    min_n: int = 1,
    max_n: int = 5,
    min_g: int = 1,
    max_g: int = 8,
    masked: bool = True,
) -> Groups:
    """Groups with random shape, rewards, lengths, correctness, greedy rewards and (optionally) invalid
    completions, whose rewards are sometimes NaN (they must be ignored)."""
    n = draw(st.integers(min_n, max_n))
    g = draw(st.integers(min_g, max_g))
    values = draw(st.sampled_from([GRID, BINARY, FINE] if dtype == torch.float64 else [GRID, BINARY]))
    rewards = torch.tensor(draw(st.lists(values, min_size=n * g, max_size=n * g)), dtype=dtype).view(n, g)
    lengths = torch.tensor(draw(st.lists(st.integers(0, 40), min_size=n * g, max_size=n * g))).view(n, g)
    correct = torch.tensor(draw(st.lists(st.booleans(), min_size=n * g, max_size=n * g))).view(n, g)
    greedy = torch.tensor(draw(st.lists(values, min_size=n, max_size=n)), dtype=dtype)
    mask = None
    if masked and draw(st.booleans()):
        mask = torch.tensor(draw(st.lists(st.booleans(), min_size=n * g, max_size=n * g))).view(n, g)
        if draw(st.booleans()):
            rewards = torch.where(mask, rewards, torch.nan)
    return Groups(rewards, lengths, mask, correct, greedy)


def make(
    rewards: list[list[float]],
    lengths: list[list[int]] | None = None,
    mask: list[list[bool]] | None = None,
    **fields: torch.Tensor,
) -> Groups:
    """Groups from nested lists (lengths default to 1, everything valid)."""
    r = torch.tensor(rewards, dtype=torch.float32)
    length = torch.ones(r.shape, dtype=torch.long) if lengths is None else torch.tensor(lengths)
    return Groups(r, length, None if mask is None else torch.tensor(mask), **fields)
