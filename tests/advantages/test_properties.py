"""Properties every estimator (or a stated family of them) must have: bad inputs, precision, scale."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlzoo.advantages import ESTIMATORS, FILTERS
from rlzoo.errors import DataError
from rlzoo.types import Groups
from tests.advantages import oracles
from tests.advantages.strategies import groups, make

# Estimators whose advantages are a per-group multiple of r - mean: they sum to 0 in every group.
MEAN_CENTRED = [
    ("grpo", {}),
    ("grpo", {"scale": "batch"}),
    ("grpo", {"scale": "none"}),
    ("rloo", {}),
    ("gpg", {}),
    ("gpg", {"scale": "group"}),
]


def _full_groups(rewards: torch.Tensor) -> Groups:
    n, g = rewards.shape
    lengths = torch.arange(1, n * g + 1).view(n, g) % 7 + 1
    correct = torch.zeros(n, g, dtype=torch.bool)
    correct[:, 0] = True
    return Groups(rewards, lengths, None, correct, rewards[:, -1].clone())


@pytest.mark.parametrize("name", ESTIMATORS.names())
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_valid_reward_raises_naming_estimator_and_position(name: str, bad: float) -> None:
    gs = _full_groups(torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.5], [1.0, 1.0, 0.0]]))
    gs.rewards[1, 2] = bad  # written after construction, which Groups cannot see
    with pytest.raises(DataError, match=rf"advantage estimator '{name}': rewards\[1, 2\] is {bad}"):
        ESTIMATORS.build(name)(gs)


def test_non_finite_reward_at_an_invalid_position_is_fine_and_filters_check_too() -> None:
    gs = make([[1, 0, 1]], mask=[[True, True, False]])
    gs.rewards[0, 2] = float("nan")
    assert ESTIMATORS.build("grpo")(gs)[0, 2] == 0
    gs.rewards[0, 1] = float("nan")
    with pytest.raises(DataError, match=r"group filter 'reinforce_rej': rewards\[0, 1\] is nan"):
        FILTERS.build("reinforce_rej")(gs)


def test_rewards_too_large_for_float32_sums_raise_instead_of_nan() -> None:
    gs = make([[3e38, -3e38, 0.0]])
    with pytest.raises(DataError, match=r"advantage estimator 'grpo': the rewards are too large"):
        ESTIMATORS.build("grpo")(gs)


@pytest.mark.parametrize("name", ESTIMATORS.names())
@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_rewards_are_computed_in_float32(name: str, half: torch.dtype) -> None:
    rewards = (torch.arange(24, dtype=torch.float32).view(4, 6) * 0.37 % 3).to(half)
    adv = ESTIMATORS.build(name)(_full_groups(rewards))
    assert adv.dtype == torch.float32
    assert torch.equal(adv, ESTIMATORS.build(name)(_full_groups(rewards.float())))


@pytest.mark.parametrize("name", ESTIMATORS.names())
@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_huge_and_tiny_reward_scales_stay_finite_and_correct(name: str, scale: float) -> None:
    grid = torch.tensor([[1, 0, 1, 0, 1, 1], [3, -1, 2, 2, 0, 5], [0.5, 0.5, 0.5, 0.5, 0.5, 0.5], [7, 1, 1, 1, 1, 1]])
    gs = _full_groups(grid * scale)
    for params in ({}, {"eps": 0.0}) if name in ("grpo", "gpg", "grpo_passk") else ({},):
        adv = ESTIMATORS.build(name, **params)(gs)
        expected = torch.tensor(oracles.ESTIMATOR_ORACLES[name](gs, **params), dtype=torch.float64)
        assert bool(torch.isfinite(adv).all())
        torch.testing.assert_close(adv.double(), expected, rtol=1e-5, atol=1e-6 * float(expected.abs().max()))


@pytest.mark.parametrize(("name", "params"), MEAN_CENTRED, ids=[f"{n}{p or ''}" for n, p in MEAN_CENTRED])
@settings(max_examples=12)
@given(gs=groups(dtype=torch.float64))
def test_mean_centred_estimators_sum_to_zero_per_group(name: str, params: dict, gs: Groups) -> None:
    adv = ESTIMATORS.build(name, **params)(gs)
    torch.testing.assert_close(adv.sum(1), torch.zeros(gs.n, dtype=torch.float64), rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ESTIMATORS.names())
@settings(max_examples=5)
@given(gs=groups(), data=st.data())
def test_estimators_do_not_modify_their_input(name: str, gs: Groups, data: st.DataObject) -> None:
    before = gs.rewards.clone()
    ESTIMATORS.build(name)(gs)
    torch.testing.assert_close(gs.rewards, before, rtol=0, atol=0, equal_nan=True)
