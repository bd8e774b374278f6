"""Length shapers: hand-worked numbers, the maths as properties, and loop oracles."""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlzoo.errors import ConfigError, DataError
from rlzoo.rewards import build_shaper
from tests.rewards import oracles
from tests.rewards.strategies import group_lists, make_groups

EXACT = {"rtol": 0.0, "atol": 1e-12}


def shaped(shaper, rewards, lengths, correct=None, mask=None) -> list[list[float]]:
    return shaper(make_groups(rewards, lengths, correct, mask)).rewards.tolist()


# -- agpo_length -----------------------------------------------------------------------------------


def test_agpo_length_hand_worked() -> None:
    rewards = [[1, 1, 0, 1], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 1]]
    lengths = [[10, 20, 5, 30], [3, 4, 5, 6], [7, 1, 2, 3], [10, 2, 5, 40]]
    correct = [[1, 1, 0, 1], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 1]]
    mask = [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 1, 1]]
    out = shaped(build_shaper("agpo_length"), rewards, lengths, correct, mask)
    # group 0, mixed; correct lengths 10, 20, 30 -> Lmin 10, Lmax 30:
    #   L=10: 1 + 0.1·(1 - 0/20) = 1.1;  L=20: 1 + 0.1·(1 - 10/20) = 1.05;  L=30: 1 + 0 = 1;  wrong: 0
    assert out[0] == pytest.approx([1.1, 1.05, 0.0, 1.0], abs=1e-12)
    # group 1, all correct: unchanged
    assert out[1] == [1, 1, 1, 1]
    # group 2, one correct answer: Lmax == Lmin -> degenerate="skip" changes nothing
    assert out[2] == [1, 0, 0, 0]
    # group 3: the invalid L=2 plays no part: Lmin 10, Lmax 40 -> 1.1 and 1.0; the invalid stays 1
    assert out[3] == pytest.approx([1.1, 1.0, 0.0, 1.0], abs=1e-12)
    full = shaped(build_shaper("agpo_length", degenerate="full"), rewards, lengths, correct, mask)
    assert full[2] == pytest.approx([1.1, 0, 0, 0], abs=1e-12)  # 1 + alpha
    assert full[1] == [1, 1, 1, 1]  # all-correct groups stay unchanged in "full" too
    alpha = shaped(build_shaper("agpo_length", alpha=0.5), rewards, lengths, correct, mask)
    assert alpha[0] == pytest.approx([1.5, 1.25, 0.0, 1.0], abs=1e-12)  # 0.5·(1 - 10/20) = 0.25


@settings(max_examples=40)
@given(group_lists(), st.floats(0, 2), st.sampled_from(["skip", "full"]))
def test_agpo_length_properties(data, alpha, degenerate) -> None:
    rewards, lengths, correct, mask = data
    groups = make_groups(rewards, lengths, correct, mask)
    out = build_shaper("agpo_length", alpha=alpha, degenerate=degenerate)(groups)
    bonus = out.rewards - groups.rewards
    right, wrong = groups.correct & groups.mask, ~groups.correct & groups.mask
    mixed = (right.any(1) & wrong.any(1))[:, None]
    assert bool((bonus[~(right & mixed)] == 0).all())  # only correct answers of mixed groups change
    assert bool((bonus >= 0).all()) and bool((bonus <= alpha + 1e-12).all())
    for i in range(groups.n):
        idx = [j for j in range(groups.g) if right[i, j] and mixed[i, 0]]
        if not idx:
            continue
        lens = [lengths[i][j] for j in idx]
        if min(lens) < max(lens):
            assert all(
                math.isclose(bonus[i, j], alpha, abs_tol=1e-12) for j in idx if lengths[i][j] == min(lens)
            )
            assert all(bonus[i, j] == 0 for j in idx if lengths[i][j] == max(lens))
        for a in idx:  # shorter never gets less
            for b in idx:
                if lengths[i][a] < lengths[i][b]:
                    assert bonus[i, a] >= bonus[i, b]
    expected = oracles.agpo_length(rewards, lengths, correct, mask, alpha, degenerate)
    torch.testing.assert_close(out.rewards, torch.tensor(expected, dtype=torch.float64), **EXACT)


# -- kimi_length -----------------------------------------------------------------------------------


def test_kimi_length_hand_worked() -> None:
    rewards = [[1, 0, 1, 0], [1, 0, 1, 0], [1, 0, 1, 0]]
    lengths = [[10, 20, 30, 50], [7, 7, 7, 7], [10, 20, 30, 100]]
    correct = [[1, 0, 1, 0], [1, 0, 1, 0], [1, 0, 1, 0]]
    mask = [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]]
    out = shaped(build_shaper("kimi_length"), rewards, lengths, correct, mask)
    # group 0: Lmin 10, Lmax 50, span 40; λ = 0.5 - (L - 10)/40 = 0.5, 0.25, 0, -0.5
    #   correct + λ: 1.5 and 1.0;  wrong + min(0, λ): 0 + 0 = 0 and 0 - 0.5 = -0.5
    assert out[0] == pytest.approx([1.5, 0.0, 1.0, -0.5], abs=1e-12)
    assert out[1] == [1, 0, 1, 0]  # all lengths equal: λ = 0
    # group 2: the invalid L=100 is excluded: Lmin 10, Lmax 30, λ = 0.5, 0, -0.5 -> 1.5, 0, 0.5
    assert out[2] == pytest.approx([1.5, 0.0, 0.5, 0.0], abs=1e-12)
    weighted = shaped(build_shaper("kimi_length", weight=0.2), rewards, lengths, correct, mask)
    assert weighted[0] == pytest.approx([1.1, 0.0, 1.0, -0.1], abs=1e-12)  # 0.2·λ


@settings(max_examples=40)
@given(group_lists(), st.floats(0, 3))
def test_kimi_length_properties(data, weight) -> None:
    rewards, lengths, correct, mask = data
    groups = make_groups(rewards, lengths, correct, mask)
    bonus = build_shaper("kimi_length", weight=weight)(groups).rewards - groups.rewards
    assert bool((bonus.abs() <= 0.5 * weight + 1e-12).all())
    assert bool((bonus[~groups.correct] <= 1e-12).all())  # a wrong answer never gains
    assert bool((bonus[~groups.mask] == 0).all())
    expected = oracles.kimi_length(rewards, lengths, correct, mask, weight)
    torch.testing.assert_close(groups.rewards + bonus, torch.tensor(expected, dtype=torch.float64), **EXACT)


# -- cosine_length ---------------------------------------------------------------------------------


def test_cosine_length_hand_worked() -> None:
    lengths = [[0, 25, 50, 100, 0, 25, 50, 120]]
    correct = [[1, 1, 1, 1, 0, 0, 0, 0]]
    rewards = [[1.0] * 8]
    out = shaped(build_shaper("cosine_length", max_length=100), rewards, lengths, correct)
    c = math.sqrt(2) / 2  # cos(π/4)
    # correct: 1 + ½(2 - 1)(1 + cos(πL/100)): L=0 -> 2, L=25 -> 1 + ½(1 + √2/2), L=50 -> 1.5, L=100 -> over -> -10
    # wrong:   0 + ½(-10 - 0)(1 + cos(πL/100)): L=0 -> -10, L=25 -> -5(1 + √2/2), L=50 -> -5, L=120 -> -10
    expected = [2.0, 1 + 0.5 * (1 + c), 1.5, -10.0, -10.0, -5 * (1 + c), -5.0, -10.0]
    assert out[0] == pytest.approx(expected, abs=1e-12)
    added = shaped(build_shaper("cosine_length", max_length=100, combine="add"), rewards, lengths, correct)
    assert added[0] == pytest.approx([1 + e for e in expected], abs=1e-12)
    # the official code's margin of 16: L + 16 >= 100 is over-length, so 84 is, 83 is not
    margin = build_shaper("cosine_length", max_length=100, margin=16)
    assert shaped(margin, [[0.0, 0.0]], [[84, 83]], [[1, 1]])[0][0] == -10.0
    assert shaped(margin, [[0.0, 0.0]], [[84, 83]], [[1, 1]])[0][1] > 1.0


@st.composite
def cosine_values(draw):
    """(min_value_correct, max_value_correct, min_value_wrong, max_value_wrong, exceed_length)."""
    correct = sorted(draw(st.lists(st.floats(-5, 5), min_size=2, max_size=2)))
    wrong = sorted(draw(st.lists(st.floats(-20, 0), min_size=2, max_size=2)))
    return (*correct, *wrong, draw(st.floats(-20, 0)))


@settings(max_examples=40)
@given(
    group_lists(max_length=60),
    st.integers(1, 50),
    st.integers(0, 5),
    st.sampled_from(["replace", "add"]),
    cosine_values(),
)
def test_cosine_length_matches_official_code(data, max_length, margin, combine, values) -> None:
    rewards, lengths, correct, mask = data
    if margin >= max_length:
        return
    names = ("min_value_correct", "max_value_correct", "min_value_wrong", "max_value_wrong", "exceed_length")
    shaper = build_shaper(
        "cosine_length",
        max_length=max_length,
        margin=margin,
        combine=combine,
        **dict(zip(names, values, strict=True)),
    )
    out = shaper(make_groups(rewards, lengths, correct, mask)).rewards
    expected = oracles.cosine_length(rewards, lengths, correct, mask, max_length, margin, combine, values)
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-9)


# -- dapo_overlong ---------------------------------------------------------------------------------


def test_dapo_overlong_hand_worked() -> None:
    lengths = [[3, 16, 17, 18, 20, 25]]
    out = shaped(build_shaper("dapo_overlong", max_length=20, cache_length=4), [[1.0] * 6], lengths)
    # Lmax - Lcache = 16: L <= 16 -> 0; L=17 -> (16-17)/4 = -0.25; 18 -> -0.5; 20 -> -1; 25 -> -1 (floor)
    assert out[0] == pytest.approx([1.0, 1.0, 0.75, 0.5, 0.0, 0.0], abs=1e-12)
    half = shaped(
        build_shaper("dapo_overlong", max_length=20, cache_length=4, factor=0.5), [[0.0] * 6], lengths
    )
    assert half[0] == pytest.approx([0, 0, -0.125, -0.25, -0.5, -0.5], abs=1e-12)
    # the paper's numbers: Lmax 20480, Lcache 4096: L = 18432 -> (16384 - 18432)/4096 = -0.5
    paper = build_shaper("dapo_overlong", max_length=20480, cache_length=4096)
    assert shaped(paper, [[0.0, 0.0]], [[16384, 18432]]) == [[0.0, -0.5]]


@settings(max_examples=40)
@given(st.integers(1, 60), st.data(), st.floats(0, 3))
def test_dapo_overlong_properties(max_length, data, factor) -> None:
    cache_length = data.draw(st.integers(1, max_length))
    lengths = list(range(max_length + 6))
    shaper = build_shaper("dapo_overlong", max_length=max_length, cache_length=cache_length, factor=factor)
    penalty = shaper(make_groups([[0.0] * len(lengths)], [lengths])).rewards[0].tolist()
    for length, p in zip(lengths, penalty, strict=True):
        if length <= max_length - cache_length:
            assert p == 0
        if length >= max_length:
            assert p == pytest.approx(-factor, abs=1e-12)
    assert all(a >= b for a, b in itertools.pairwise(penalty))  # non-increasing in length
    expected = oracles.dapo_overlong(
        [[0.0] * len(lengths)], [lengths], [[True] * len(lengths)], max_length, cache_length, factor
    )
    assert penalty == pytest.approx(expected[0], abs=1e-12)


# -- configuration and missing verdicts --------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "param"),
    [
        ({"name": "agpo_length", "alpha": -0.1}, "alpha"),
        ({"name": "kimi_length", "weight": -1.0}, "weight"),
        ({"name": "cosine_length", "max_length": 0}, "max_length"),
        ({"name": "cosine_length", "max_length": 10, "max_value_wrong": 1.0}, "max_value_wrong"),
        ({"name": "dapo_overlong", "max_length": 10, "cache_length": 11}, "cache_length"),
        ({"name": "dapo_overlong", "max_length": 10, "cache_length": 0}, "cache_length"),
    ],
)
def test_bad_parameters_are_config_errors(spec, param) -> None:
    with pytest.raises(ConfigError, match=rf"reward shaper '{spec['name']}': {param}="):
        build_shaper(spec)


@pytest.mark.parametrize(
    "spec", ["agpo_length", "kimi_length", {"name": "cosine_length", "max_length": 10}, "binary_correct"]
)
def test_shapers_that_need_the_verdict_say_so(spec) -> None:
    shaper = build_shaper(spec)
    with pytest.raises(
        DataError, match=rf"reward shaper '{type(shaper).component_name}': groups.correct is None"
    ):
        shaper(make_groups([[1.0, 0.0]], [[3, 4]]))


def test_float32_rewards_stay_float32() -> None:
    groups = make_groups([[1.0, 0.0, 1.0]], [[4, 9, 8]], [[1, 0, 1]], dtype=torch.float32)
    out = build_shaper("agpo_length")(groups)
    assert out.rewards.dtype == torch.float32
    assert out.rewards[0].tolist() == pytest.approx([1.1, 0.0, 1.0], abs=1e-6)  # 1 + 0.1·(1 - 0/4), +0, +0
