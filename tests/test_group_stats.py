"""The neutral shared statistics: exact anchors, power-of-two scales, both sum-of-squares paths, normalise."""

import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlzoo.advantages.grpo import GRPO
from rlzoo.errors import DataError
from rlzoo.group_stats import GroupStats, all_valid, group_sum, normalise, normalised_factor
from rlzoo.types import Groups
from tests.advantages.strategies import groups, make


def test_all_valid_reads_the_mask_bytes() -> None:
    assert all_valid(torch.ones(3, 4, dtype=torch.bool))
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[2, 3] = False
    assert not all_valid(mask)
    assert all_valid(torch.ones(0, 4, dtype=torch.bool))


def test_the_mean_of_an_all_equal_group_is_exactly_its_value() -> None:
    gs = make([[0.1] * 8, [9, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]], mask=[[True] * 8, [False] + [True] * 7])
    stats = GroupStats.of(gs, "test")
    assert stats.mean.tolist() == gs.rewards[[0, 1], [0, 1]].tolist()  # sum/count would be one ulp off
    assert gs.rewards[0].sum() / 8 != gs.rewards[0, 0]
    assert torch.equal(stats.centred, torch.zeros(2, 8))
    assert stats.equal.tolist() == [True, True]


@settings(max_examples=40)
@given(gs=groups())
def test_scale_is_a_power_of_two_within_a_factor_two_of_the_mean_absolute_deviation(gs: Groups) -> None:
    stats = GroupStats.of(gs, "test")
    mantissa, _ = torch.frexp(stats.scale)
    assert bool((mantissa == 0.5).all())
    mad = stats.spread / stats.count.clamp_min(1)
    informative = ~stats.equal
    assert bool((stats.scale[informative] <= mad[informative]).all())
    assert bool((2 * stats.scale[informative] > mad[informative]).all())


@settings(max_examples=40)
@given(gs=groups(dtype=torch.float64), ddof=st.sampled_from([0, 1]))
def test_both_sum_of_squares_paths_agree_and_match_torch(gs: Groups, ddof: int) -> None:
    stats = GroupStats.of(gs, "test")
    plain, scaled = stats.std(ddof, 1e-6), stats.std(ddof, 0.0)  # eps 0 takes the scaled path
    torch.testing.assert_close(plain, scaled, rtol=1e-12, atol=1e-12)
    for i in range(gs.n):
        valid = gs.rewards[i][gs.mask[i]]
        if len(valid) > ddof:
            expected = valid.var(correction=ddof).sqrt()
            torch.testing.assert_close(stats.std(ddof, 1e-6)[i], expected, rtol=1e-12, atol=1e-12)
    every = gs.rewards[gs.mask]
    if len(every) > ddof:
        torch.testing.assert_close(stats.batch_std(ddof, 1e-6), every.var(correction=ddof).sqrt(), rtol=1e-10, atol=1e-12)


def test_plain_squares_that_overflow_fall_back_to_scaled_ones() -> None:
    # ±1e30: mean 0, Σc² = 4e60 overflows float32; sample std = 1e30·sqrt(4/3)
    gs = make([[1e30, -1e30, 1e30, -1e30]])
    stats = GroupStats.of(gs, "test")
    assert torch.isinf(group_sum(stats.centred * stats.centred)).all()
    torch.testing.assert_close(stats.std(1, 1e-6), torch.tensor([1e30 * (4 / 3) ** 0.5]), rtol=1e-6, atol=0)


def test_normalise_hand_worked() -> None:
    gs = make([[1.0, 3.0], [5.0, 5.0], [2.0, 9.0]], mask=[[True, True], [True, True], [True, False]])
    s = 2**-0.5  # 1, 3: mean 2, sample std √2; 5, 5: all equal; a group of one: 0
    torch.testing.assert_close(normalise(gs, "test", eps=0.0), torch.tensor([[-s, s], [0.0, 0.0], [0.0, 0.0]]))
    # population std 1 and eps 1: (r - mean) / 2
    assert normalise(gs, "test", std_ddof=0, eps=1.0)[0].tolist() == [-0.5, 0.5]


@settings(max_examples=40)
@given(gs=groups(), ddof=st.sampled_from([0, 1]), eps=st.sampled_from([0.0, 1e-6, 1e-4]))
def test_normalise_is_grpo_with_group_scale_and_zero_singletons(gs: Groups, ddof: int, eps: float) -> None:
    """The shared function, GRPO's plain case and the general path (stats, factor, output) agree exactly."""
    stats = GroupStats.of(gs, "test")
    general = stats.output(normalised_factor(stats, "group", ddof, eps))
    shared = normalise(gs, "test", std_ddof=ddof, eps=eps)
    assert torch.equal(shared, general)
    assert torch.equal(GRPO(std_ddof=ddof, eps=eps)(gs), shared)


def test_normalise_names_the_caller_in_its_errors() -> None:
    with pytest.raises(DataError, match=r"^who: the rewards are too large"):
        normalise(make([[3e38, -3e38]]), "who")


def test_the_rewards_do_not_import_the_advantages() -> None:
    code = "import sys, rlzoo.rewards; assert not any(m.startswith('rlzoo.advantages') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
