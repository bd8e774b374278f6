"""The operand space behind both embedded tasks: a fixed partition into eval and train."""

import random

import pytest

from rlzoo.errors import ConfigError
from rlzoo.tasks.operands import OperandSpace

SMALL = OperandSpace(count=2, mult=37, low=0, high=9)  # 100 pairs, gcd(37, 100) = 1


def test_the_splits_partition_every_tuple() -> None:
    ev = SMALL.sample("eval", SMALL.split_size("eval"), random.Random(0))
    tr = SMALL.sample("train", SMALL.split_size("train"), random.Random(0))
    assert (len(ev), len(tr)) == (10, 90)
    assert sorted(ev + tr) == [(a, b) for a in range(10) for b in range(10)]


def test_operands_are_digits_first_most_significant() -> None:
    assert SMALL.operands(0) == (0, 0) and SMALL.operands(7) == (0, 7) and SMALL.operands(42) == (4, 2)
    assert OperandSpace(count=3, mult=450_547).operands(0) == (10, 10, 10)


def test_with_replacement_may_repeat_and_stays_in_its_split() -> None:
    draws = SMALL.sample("eval", 50, random.Random(1), distinct=False)
    assert len(set(draws)) <= 10 < len(draws)
    assert set(draws) <= set(SMALL.sample("eval", 10, random.Random(0)))


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ConfigError, match=r"make_split: size=11 for split 'eval'; it holds 10"):
        SMALL.sample("eval", 11, random.Random(0))
    with pytest.raises(ValueError, match="shares a factor"):
        OperandSpace(count=2, mult=10, low=0, high=9)
