"""Conformance suite over every registered shaper."""

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlzoo.errors import DataError
from rlzoo.rewards import SHAPERS, build_shaper
from rlzoo.types import Groups
from tests.rewards.strategies import group_lists, make_groups

# Values for required parameters, by parameter name (never by shaper): lengths below go up to 40.
REQUIRED = {"max_length": 32, "cache_length": 8}


def build(name: str):
    params = {p.name: REQUIRED[p.name] for p in SHAPERS.get(name).params if p.required}
    return build_shaper(name, **params)


def permute(groups: Groups, perms: list[list[int]]) -> Groups:
    index = torch.tensor(perms)
    take = lambda x: None if x is None else x.gather(1, index)  # noqa: E731
    return Groups(
        take(groups.rewards), take(groups.lengths), mask=take(groups.mask), correct=take(groups.correct)
    )


@pytest.mark.parametrize("name", SHAPERS.names())
@settings(max_examples=25)
@given(data=group_lists(), choice=st.data())
def test_permutation_equivariant(name, data, choice) -> None:
    groups = make_groups(*data[:1], data[1], data[2], data[3])
    perms = [choice.draw(st.permutations(range(groups.g))) for _ in range(groups.n)]
    shaper = build(name)
    out = shaper(groups).rewards
    torch.testing.assert_close(
        shaper(permute(groups, perms)).rewards, out.gather(1, torch.tensor(perms)), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("name", SHAPERS.names())
@settings(max_examples=25)
@given(data=group_lists(), other=group_lists(max_n=1), choice=st.data())
def test_groups_are_independent(name, data, other, choice) -> None:
    rewards, lengths, correct, mask = data
    row = choice.draw(st.integers(0, len(rewards) - 1))
    g = len(rewards[0])
    changed = [[*x[:row], (y[0] * g)[:g], *x[row + 1 :]] for x, y in zip(data, other, strict=True)]
    shaper = build(name)
    before = shaper(make_groups(rewards, lengths, correct, mask)).rewards
    after = shaper(make_groups(*changed)).rewards
    keep = [i for i in range(len(rewards)) if i != row]
    assert torch.equal(before[keep], after[keep])


@pytest.mark.parametrize("name", SHAPERS.names())
@settings(max_examples=25)
@given(data=group_lists(), noise=st.data())
def test_invalid_completions_are_untouched_and_play_no_part(name, data, noise) -> None:
    rewards, lengths, correct, mask = data
    groups = make_groups(rewards, lengths, correct, mask)
    invalid = ~groups.mask
    # change everything about the invalid completions: NaN rewards, huge lengths, flipped verdicts
    other = Groups(
        torch.where(invalid, torch.nan, groups.rewards),
        torch.where(invalid, 10**6, groups.lengths),
        mask=groups.mask,
        correct=torch.where(invalid, ~groups.correct, groups.correct),
    )
    shaper = build(name)
    out, out_other = shaper(groups).rewards, shaper(other).rewards
    assert torch.equal(out[invalid], groups.rewards[invalid])
    assert bool(torch.isnan(out_other[invalid]).all())
    assert torch.equal(out[groups.mask], out_other[groups.mask])
    assert bool(torch.isfinite(out).all())
    assert out.shape == groups.rewards.shape and out.dtype == groups.rewards.dtype


@pytest.mark.parametrize("name", SHAPERS.names())
def test_other_fields_pass_through(name) -> None:
    groups = make_groups([[1.0, 0.0, 1.0]], [[5, 9, 30]], correct=[[1, 0, 1]], mask=[[1, 1, 0]])
    out = build(name)(groups)
    for field in dataclasses.fields(Groups):
        if field.name != "rewards":
            assert getattr(out, field.name) is getattr(groups, field.name)


@pytest.mark.parametrize("name", SHAPERS.names())
def test_without_a_verdict_either_works_or_names_itself(name) -> None:
    shaper = build(name)
    try:
        out = shaper(make_groups([[1.0, 0.0]], [[5, 40]]))
    except DataError as exc:
        assert f"reward shaper '{name}'" in str(exc) and "groups.correct" in str(exc)
    else:
        assert out.rewards.shape == (1, 2)
