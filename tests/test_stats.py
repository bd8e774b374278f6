"""Paired statistics over seeds: hand-worked intervals and the properties that define them."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlzoo.errors import ConfigError
from rlzoo.stats import _quantile_index, bootstrap_interval, paired_difference


def test_two_seeds_hand_worked() -> None:
    # differences 1 and 3: the four equally likely resamples have means 1, 2, 2, 3. P(mean = 1) = 25%
    # reaches 2.5%, so the lower end is 1; P(mean <= 2) = 75% < 97.5%, so the upper end is 3.
    d = paired_difference({0: 4.0, 1: 5.0}, {0: 3.0, 1: 2.0})
    assert d.seeds == (0, 1) and d.diffs == (1.0, 3.0)
    assert d.mean == 2.0 and d.sd == pytest.approx(math.sqrt(2.0), abs=1e-12)
    assert d.interval == (1.0, 3.0) and d.excludes_zero is True


def test_four_seeds_hand_worked() -> None:
    # differences 0, 0, 0, 4: a resample's mean is k, the number of times it draws the 4,
    # k ~ Binomial(4, 1/4): P(k = 0) = 81/256 = 31.6%, so the lower end is 0; P(k <= 2) = 243/256 = 94.9%
    # < 97.5% <= P(k <= 3) = 255/256, so the upper end is 3 (the mean 4, P = 1/256, lies outside).
    assert bootstrap_interval([0.0, 0.0, 0.0, 4.0]) == (0.0, 3.0)
    d = paired_difference({s: v for s, v in enumerate([0.0, 0.0, 0.0, 4.0])}, {s: 0.0 for s in range(4)})
    assert d.mean == 1.0 and d.interval == (0.0, 3.0) and d.excludes_zero is False
    shifted = paired_difference({s: v for s, v in enumerate([1.0, 1.0, 1.0, 5.0])}, {s: 0.0 for s in range(4)})
    assert shifted.interval == (1.0, 4.0) and shifted.excludes_zero is True  # the same draws, shifted by 1


def test_negative_differences_exclude_zero_from_below() -> None:
    d = paired_difference({0: 1.0, 1: 2.0}, {0: 4.0, 1: 3.0})
    assert d.diffs == (-3.0, -1.0) and d.interval == (-3.0, -1.0) and d.excludes_zero is True


def test_one_seed_has_no_interval() -> None:
    d = paired_difference({0: 0.75}, {0: 0.5, 1: 0.25})
    assert d.seeds == (0,) and d.mean == 0.25 and d.sd == 0.0
    assert d.interval is None and d.excludes_zero is None
    assert d.to_dict()["interval"] is None


def test_pairs_on_the_seeds_both_have() -> None:
    d = paired_difference({0: 0.75, 1: 0.5, 2: 1.0}, {0: 0.5, 1: 0.5, 3: 0.0})
    assert d.seeds == (0, 1) and d.diffs == (0.25, 0.0) and d.mean == 0.125 and d.interval == (0.0, 0.25)
    with pytest.raises(ConfigError, match="share no seed"):
        paired_difference({0: 1.0}, {1: 1.0})


def test_equal_differences_give_the_exact_interval() -> None:
    # 0.1 summed five times is not 0.5 in floats; the interval is still exactly [0.1, 0.1]
    assert bootstrap_interval([0.1] * 5) == (0.1, 0.1)
    d = paired_difference({s: 0.3 for s in range(5)}, {s: 0.2 for s in range(5)})
    assert d.interval == (d.mean, d.mean) == (d.diffs[0], d.diffs[0])


def test_quantile_indices_and_argument_checks() -> None:
    assert (_quantile_index(0.025, 10_000), _quantile_index(0.975, 10_000)) == (249, 9749)
    assert (_quantile_index(0.0, 10), _quantile_index(1.0, 10)) == (0, 9)
    with pytest.raises(ConfigError, match="level"):
        bootstrap_interval([1.0, 2.0], level=1.0)
    assert bootstrap_interval([1.0, math.nan]) is not None and math.isnan(bootstrap_interval([1.0, math.nan])[0])


def test_fixed_seed_reproduces_the_interval() -> None:
    values = [0.3, -0.1, 0.25, 0.05, 0.4]
    assert bootstrap_interval(values) == bootstrap_interval(values)
    assert bootstrap_interval(values, seed=1) == bootstrap_interval(values, seed=1)


values = st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=2, max_size=8)


@given(values)
def test_interval_contains_the_mean_and_lies_within_the_values(diffs: list[float]) -> None:
    d = paired_difference(dict(enumerate(diffs)), dict.fromkeys(range(len(diffs)), 0.0))
    lo, hi = d.interval
    tol = 1e-12
    assert min(diffs) - tol <= lo <= d.mean + tol and d.mean - tol <= hi <= max(diffs) + tol


@given(values)
def test_identical_recipes_differ_by_exactly_zero(scores: list[float]) -> None:
    same = dict(enumerate(scores))
    d = paired_difference(same, dict(same))
    assert d.diffs == (0.0,) * len(scores) and d.mean == 0.0 and d.sd == 0.0
    assert d.interval == (0.0, 0.0) and d.excludes_zero is False


@given(values, st.floats(-5.0, 5.0, allow_nan=False))
def test_interval_shifts_with_the_differences(diffs: list[float], shift: float) -> None:
    base, moved = bootstrap_interval(diffs), bootstrap_interval([x + shift for x in diffs])
    assert moved[0] == pytest.approx(base[0] + shift, abs=1e-9) and moved[1] == pytest.approx(base[1] + shift, abs=1e-9)
