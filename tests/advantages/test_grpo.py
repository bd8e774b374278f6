"""GRPO (and Dr. GRPO / GVPO's centring as scale="none"): hand-worked numbers and properties."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlzoo.advantages import ESTIMATORS
from rlzoo.errors import ConfigError, DataError
from rlzoo.types import Groups
from tests.advantages.strategies import groups, make

TIGHT = {"rtol": 1e-6, "atol": 1e-7}


def test_hand_worked_group_std() -> None:
    # r = [1, 0, 1, 0]: mean 0.5, deviations ±0.5, sample var = 4·0.25/3 = 1/3, std = 0.57735
    adv = ESTIMATORS.build("grpo")(make([[1, 0, 1, 0]]))
    a = 0.5 / (math.sqrt(1 / 3) + 1e-6)  # 0.8660240...
    torch.testing.assert_close(adv, torch.tensor([[a, -a, a, -a]]), **TIGHT)


def test_hand_worked_population_std_and_eps() -> None:
    # population var = 4·0.25/4 = 0.25, std 0.5; eps 1e-4: A = ±0.5/0.5001
    adv = ESTIMATORS.build("grpo", std_ddof=0, eps=1e-4)(make([[1, 0, 1, 0]]))
    a = 0.5 / 0.5001
    torch.testing.assert_close(adv, torch.tensor([[a, -a, a, -a]]), **TIGHT)


def test_hand_worked_scale_none_is_mean_centring() -> None:
    # r = [3, 1, 2]: mean 2 -> [1, -1, 0]
    adv = ESTIMATORS.build("grpo", scale="none")(make([[3, 1, 2]]))
    assert torch.equal(adv, torch.tensor([[1.0, -1.0, 0.0]]))


def test_hand_worked_batch_std() -> None:
    # batch: 1,0,1,0,1,1,1,0: mean 5/8, Σ(r - 5/8)² = 5·0.140625 + 3·0.390625 = 1.875, /7 -> std 0.517549
    # group 2: mean 0.75, centred [0.25, 0.25, 0.25, -0.75]
    adv = ESTIMATORS.build("grpo", scale="batch")(make([[1, 0, 1, 0], [1, 1, 1, 0]]))
    std = math.sqrt(1.875 / 7)
    expected = torch.tensor([[0.5, -0.5, 0.5, -0.5], [0.25, 0.25, 0.25, -0.75]]) / (std + 1e-6)
    torch.testing.assert_close(adv, expected, **TIGHT)


def test_hand_worked_mask() -> None:
    # valid [1, 0] only: mean 0.5, sample std sqrt(0.5) = 0.70711; the NaN and the 5 are ignored
    gs = make([[1, 0, float("nan"), 5]], mask=[[True, True, False, False]])
    a = 0.5 / (math.sqrt(0.5) + 1e-6)
    torch.testing.assert_close(ESTIMATORS.build("grpo")(gs), torch.tensor([[a, -a, 0, 0]]), **TIGHT)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_all_equal_groups_are_exactly_zero_including_one_ulp_means(scale: str) -> None:
    # float32(sum of eight 0.1)/8 != 0.1: a residual / eps would give noise, max == min gives 0
    rewards = torch.tensor([[0.1] * 8, [1 / 3] * 8, [0.7] * 8, [1.0, 0, 1, 0, 1, 0, 1, 0]])
    assert rewards[0].sum() / 8 != rewards[0, 0]
    adv = ESTIMATORS.build("grpo", scale=scale, eps=0.0)(Groups(rewards, torch.ones(4, 8, dtype=torch.long)))
    assert torch.equal(adv[:3], torch.zeros(3, 8))
    assert bool((adv[3] != 0).all())


@settings(max_examples=30)
@given(value=st.floats(-1e30, 1e30).map(lambda v: float(torch.tensor(v, dtype=torch.float32))), g=st.integers(1, 64), scale=st.sampled_from(["group", "batch", "none"]))
def test_all_equal_group_property(value: float, g: int, scale: str) -> None:
    gs = Groups(torch.full((2, g), value), torch.ones(2, g, dtype=torch.long))
    assert torch.equal(ESTIMATORS.build("grpo", scale=scale)(gs), torch.zeros(2, g))


@pytest.mark.parametrize(("singleton", "expected"), [("zero", 0.0), ("passthrough", 3.0)])
def test_singleton_policy(singleton: str, expected: float) -> None:
    gs = make([[3, 9, 9], [1, 0, 1]], mask=[[True, False, False], [True, True, True]])
    adv = ESTIMATORS.build("grpo", singleton=singleton)(gs)
    assert adv[0].tolist() == [expected, 0.0, 0.0]
    torch.testing.assert_close(adv[1], ESTIMATORS.build("grpo")(make([[1, 0, 1]]))[0], rtol=0, atol=0)


def test_singleton_raise_names_the_group() -> None:
    gs = make([[1, 0], [3, 9]], mask=[[True, True], [False, True]])
    with pytest.raises(DataError, match=r"advantage estimator 'grpo': group 1 has a single valid completion"):
        ESTIMATORS.build("grpo", singleton="raise")(gs)


@settings(max_examples=30)
@given(gs=groups(max_g=6), singleton=st.sampled_from(["zero", "passthrough"]))
def test_groups_of_one_follow_the_singleton_policy(gs: Groups, singleton: str) -> None:
    adv = ESTIMATORS.build("grpo", singleton=singleton)(gs)
    singles = gs.mask.sum(1) == 1
    expected = gs.rewards if singleton == "passthrough" else torch.zeros_like(gs.rewards)
    assert torch.equal(adv[singles], torch.where(gs.mask, expected, 0.0)[singles])


def test_eps_must_be_a_non_negative_number() -> None:
    for bad in (-1.0, float("nan")):
        with pytest.raises(ConfigError, match="advantage estimator 'grpo': eps="):
            ESTIMATORS.build("grpo", eps=bad)


@settings(max_examples=30)
@given(gs=groups(dtype=torch.float64), shift=st.integers(-8000, 8000), scale=st.sampled_from(["group", "batch", "none"]))
def test_shift_invariance(gs: Groups, shift: int, scale: str) -> None:
    estimator = ESTIMATORS.build("grpo", scale=scale)
    torch.testing.assert_close(estimator(gs.replace(rewards=gs.rewards + shift / 8)), estimator(gs), rtol=1e-9, atol=1e-9)


@settings(max_examples=30)
@given(gs=groups(dtype=torch.float64), factor=st.floats(1e-3, 1e3), scale=st.sampled_from(["group", "batch"]))
def test_positive_scale_invariance_without_eps(gs: Groups, factor: float, scale: str) -> None:
    estimator = ESTIMATORS.build("grpo", scale=scale, eps=0.0)
    torch.testing.assert_close(estimator(gs.replace(rewards=gs.rewards * factor)), estimator(gs), rtol=1e-9, atol=1e-9)


@settings(max_examples=30)
@given(gs=groups(), data=st.data())
def test_masking_a_column_is_deleting_it(gs: Groups, data: st.DataObject) -> None:
    column = data.draw(st.integers(0, gs.g - 1))
    keep = [j for j in range(gs.g) if j != column]
    mask = gs.mask.clone()
    mask[:, column] = False
    for scale in ("group", "batch", "none"):
        estimator = ESTIMATORS.build("grpo", scale=scale)
        masked = estimator(gs.replace(mask=mask))
        deleted = estimator(Groups(gs.rewards[:, keep], gs.lengths[:, keep], gs.mask[:, keep]))
        assert bool((masked[:, column] == 0).all())
        torch.testing.assert_close(masked[:, keep], deleted, rtol=1e-6, atol=1e-6)


def test_lite_ppo_vector_l1() -> None:
    """ALGORITHMS.md II.8 L1: groups [1, 0] and [1, 1], batch std 0.5 (unbiased, raw rewards)."""
    gs = make([[1, 0], [1, 1]])
    roll = ESTIMATORS.build("grpo", scale="batch")(gs)  # the lite_ppo recipe's: eps 1e-6 as ROLL
    torch.testing.assert_close(roll, torch.tensor([[0.999998, -0.999998], [0.0, 0.0]]), rtol=0, atol=1e-6)
    assert roll[1].tolist() == [0.0, 0.0]  # a constant group is exactly 0 whatever the batch std
    trl_batch = ESTIMATORS.build("grpo", scale="batch", eps=1e-4)(gs)  # TRL's scale_rewards="batch"
    torch.testing.assert_close(trl_batch, torch.tensor([[0.9998, -0.9998], [0.0, 0.0]]), rtol=0, atol=1e-6)
    trl_group = ESTIMATORS.build("grpo", eps=1e-4)(gs)  # TRL's default, the grpo_trl recipe's
    torch.testing.assert_close(trl_group, torch.tensor([[0.707007, -0.707007], [0.0, 0.0]]), rtol=0, atol=1e-6)
    assert torch.equal(ESTIMATORS.build("grpo", scale="batch")(make([[1, 1], [1, 1]])), torch.zeros(2, 2))
