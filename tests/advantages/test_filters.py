"""Filters: Reinforce-Rej (min < max) and DAPO dynamic sampling (0 < #correct < #valid)."""

import pytest
import torch

from rlzoo.advantages import FILTERS
from rlzoo.errors import DataError
from tests.advantages.strategies import make

T, F = True, False


def test_reinforce_rej_hand_worked() -> None:
    # mixed -> keep; all 1 -> drop; all 0 -> drop; valid [2, 2] (the 7 is invalid) -> drop; one valid -> drop
    gs = make(
        [[1, 0, 1], [1, 1, 1], [0, 0, 0], [2, 7, 2], [1, 0, 0]],
        mask=[[T, T, T], [T, T, T], [T, T, T], [T, F, T], [T, F, F]],
    )
    keep = FILTERS.build("reinforce_rej")(gs)
    assert keep.tolist() == [[T, T, T], [F, F, F], [F, F, F], [F, F, F], [F, F, F]]


def test_reinforce_rej_one_ulp_apart_is_kept() -> None:
    a = torch.tensor(0.1)
    b = torch.nextafter(a, torch.tensor(1.0))
    gs = make([[a.item(), b.item()]])
    assert FILTERS.build("reinforce_rej")(gs).tolist() == [[T, T]]


def test_dapo_hand_worked() -> None:
    # 2 of 3 right -> keep; 3 of 3 -> drop; 0 of 3 -> drop; 2 right of 2 valid (the wrong one invalid) -> drop
    correct = torch.tensor([[T, F, T], [T, T, T], [F, F, F], [T, F, T]])
    gs = make([[0, 0, 0]] * 4, mask=[[T, T, T], [T, T, T], [T, T, T], [T, F, T]], correct=correct)
    keep = FILTERS.build("dapo", mode="zero")(gs)
    assert keep.tolist() == [[T, T, T], [F, F, F], [F, F, F], [F, F, F]]


def test_dapo_needs_correctness() -> None:
    with pytest.raises(DataError, match=r"group filter 'dapo': needs groups.correct"):
        FILTERS.build("dapo")(make([[1, 0]]))


def test_mode_is_a_typed_choice() -> None:
    assert FILTERS.build("reinforce_rej", mode="zero").mode == "zero"
    with pytest.raises(Exception, match="mode"):
        FILTERS.build("dapo", mode="keep")


def test_both_filters_declare_that_they_remove_all_equal_groups() -> None:
    # the recipe warns when such a filter meets an estimator with an all-equal rule (AGPO)
    assert all(FILTERS.build(name).removes_all_equal_groups for name in FILTERS.names())
