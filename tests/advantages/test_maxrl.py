"""MaxRL: the test vectors of ALGORITHMS.md II.4 for every mode, and its defining properties."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlzoo.advantages import ESTIMATORS
from rlzoo.errors import ConfigError
from rlzoo.types import Groups
from tests.advantages.strategies import groups, make

PAPER = {}  # the default: (r - mean)/mean where mean > 0, else 0 (the paper, prime-rl)
SKYRL = {"denominator": "mean_eps"}  # (r - mean)/(mean + 1e-6)
TRL_UNMERGED = {"denominator": "abs_mean_eps", "eps": 1e-4}  # (r - mean)/(|mean| + 1e-4)


def _maxrl(rewards: list[float], **params: object) -> list[float]:
    return ESTIMATORS.build("maxrl", **params)(make([rewards]))[0].tolist()


def test_m1_one_success_in_four() -> None:
    assert _maxrl([1, 0, 0, 0]) == [3.0, -1.0, -1.0, -1.0]  # exact: mean 0.25 is a power of two
    assert _maxrl([1, 0, 0, 0], **SKYRL) == pytest.approx([2.999988, -0.999996, -0.999996, -0.999996], abs=1e-6)
    # GRPO for comparison: [1.5, -0.5, -0.5, -0.5]
    assert ESTIMATORS.build("grpo")(make([[1, 0, 0, 0]]))[0].tolist() == pytest.approx([1.5, -0.5, -0.5, -0.5], rel=1e-5)


@pytest.mark.parametrize("params", [PAPER, SKYRL, TRL_UNMERGED])
def test_m2_all_zero_group_is_zero_everywhere(params: dict) -> None:
    assert _maxrl([0, 0, 0, 0], **params) == [0.0] * 4


def test_m3_zero_mean_non_binary_rewards() -> None:
    assert _maxrl([0.5, -0.5]) == [0.0, 0.0]
    assert _maxrl([0.5, -0.5], **SKYRL) == pytest.approx([5e5, -5e5], rel=1e-6)
    assert _maxrl([0.5, -0.5], **TRL_UNMERGED) == pytest.approx([5000.0, -5000.0], rel=1e-6)


def test_m4_negative_mean() -> None:
    assert _maxrl([-1, -3]) == [0.0, 0.0]
    # SkyRL flips the signs: the better sample gets A < 0
    assert _maxrl([-1, -3], **SKYRL) == pytest.approx([-0.5, 0.5], rel=1e-5)
    assert _maxrl([-1, -3], **TRL_UNMERGED) == pytest.approx([1 / 2.0001, -1 / 2.0001], rel=1e-6)


def test_binary_rewards_give_n_minus_k_over_k_and_minus_one() -> None:
    # K = 3 of N = 8: a success gets (N - K)/K = 5/3, a failure -1
    rewards = [1, 0, 1, 0, 0, 1, 0, 0]
    expected = [5 / 3 if r else -1.0 for r in rewards]
    assert _maxrl(rewards) == pytest.approx(expected, rel=1e-6)


def test_singleton_and_invalid_completions() -> None:
    gs = make([[2.0, 7.0], [1.0, 0.0]], mask=[[True, False], [True, True]])
    assert ESTIMATORS.build("maxrl")(gs).tolist() == [[0.0, 0.0], [1.0, -1.0]]
    assert ESTIMATORS.build("maxrl", singleton="passthrough")(gs).tolist() == [[2.0, 0.0], [1.0, -1.0]]


def test_modes_are_a_literal_and_eps_is_checked() -> None:
    with pytest.raises(ConfigError, match="did you mean 'mean_eps'"):
        ESTIMATORS.build("maxrl", denominator="mean_epss")
    with pytest.raises(ConfigError, match=r"eps=-1\.0"):
        ESTIMATORS.build("maxrl", eps=-1.0)


# -- properties ---------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [PAPER, SKYRL, TRL_UNMERGED])
@settings(max_examples=30)
@given(value=st.sampled_from([0.0, 1.0, 0.1, -2.5, 1e-7, 3e5]), g=st.integers(1, 9))
def test_all_equal_groups_are_exactly_zero(params: dict, value: float, g: int) -> None:
    assert _maxrl([value] * g, **params) == [0.0] * g


@settings(max_examples=40)
@given(gs=groups(dtype=torch.float64))
def test_advantage_is_the_centred_reward_scaled_by_one_over_the_mean(gs: Groups) -> None:
    """A · mean = r - mean where the group's mean is > 0, A = 0 where it is <= 0."""
    adv = ESTIMATORS.build("maxrl")(gs)
    valid = gs.mask.double()
    rewards = torch.where(gs.mask, gs.rewards, 0.0)
    mean = rewards.sum(1) / valid.sum(1).clamp_min(1)
    centred = torch.where(gs.mask, rewards - mean[:, None], 0.0)
    positive = (mean > 0)[:, None]
    torch.testing.assert_close(
        torch.where(positive, adv * mean[:, None], 0.0), torch.where(positive, centred, 0.0), rtol=1e-9, atol=1e-9
    )
    assert torch.equal(torch.where(positive, 0.0, adv), torch.zeros_like(adv))


@settings(max_examples=30)
@given(gs=groups(dtype=torch.float64), c=st.sampled_from([0.25, 3.0, 1e3]))
def test_positive_reward_scale_changes_nothing(gs: Groups, c: float) -> None:
    """A depends on r/mean only: it scales as 1/mean, so rewards times c > 0 give the same advantages."""
    estimator = ESTIMATORS.build("maxrl")
    torch.testing.assert_close(estimator(gs.replace(rewards=gs.rewards * c)), estimator(gs), rtol=1e-9, atol=1e-9)


@settings(max_examples=30)
@given(k=st.integers(1, 16), extra=st.integers(0, 16))
def test_success_weight_scales_as_one_over_the_success_rate(k: int, extra: int) -> None:
    """A success's advantage is 1/p - 1 with p = K/N the group's success rate."""
    n = k + extra
    adv = _maxrl([1.0] * k + [0.0] * extra)
    assert adv[0] == pytest.approx(n / k - 1, rel=1e-6, abs=1e-6)
    assert adv[k:] == pytest.approx([-1.0] * extra if k < n else [], rel=1e-6)
