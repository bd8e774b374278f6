"""Every estimator and filter against its slow loop oracle (tests/advantages/oracles.py).

float64 inputs use fine-grained rewards and tolerances near float64 precision; float32 inputs use
the coarse grid (sums exact, conditioning bounded) and tolerances near float32 precision.
"""

import pytest
import torch
from hypothesis import given, settings

from rlzoo.advantages import ESTIMATORS, FILTERS
from rlzoo.types import Groups
from tests.advantages import oracles
from tests.advantages.strategies import groups

# Non-default parameters worth their own differential run (the defaults always run).
VARIANTS = [
    ("grpo", {"scale": "batch"}),
    ("grpo", {"scale": "none"}),
    ("grpo", {"std_ddof": 0, "eps": 0.0}),
    ("grpo", {"singleton": "passthrough"}),
    ("agpo", {"reward_min": -1.0, "pos": 2.0, "neg": -0.5, "scale": "none", "singleton": "passthrough"}),
    ("grpo_passk", {"scale": "none"}),
    ("grpo_passk", {"std_ddof": 0}),
    ("gpg", {"scale": "group", "eps": 1e-4}),
    ("reinforce_pp", {"eps": 1e-2}),
    ("reinforce_pp", {"std_ddof": 1}),
    ("reinforce_pp_baseline", {"std_ddof": 1}),
    ("maxrl", {"denominator": "mean_eps"}),
    ("maxrl", {"denominator": "abs_mean_eps", "eps": 1e-4}),
    ("maxrl", {"singleton": "passthrough"}),
]
CASES = [(name, {}) for name in ESTIMATORS.names()] + VARIANTS
TOLERANCES = {torch.float64: {"rtol": 1e-9, "atol": 1e-9}, torch.float32: {"rtol": 1e-5, "atol": 1e-5}}


def test_every_estimator_and_filter_has_an_oracle() -> None:
    assert set(oracles.ESTIMATOR_ORACLES) == set(ESTIMATORS.names())
    assert set(oracles.FILTER_ORACLES) == set(FILTERS.names())


def _check(name: str, params: dict, gs: Groups) -> None:
    actual = ESTIMATORS.build(name, **params)(gs)
    expected = torch.tensor(oracles.ESTIMATOR_ORACLES[name](gs, **params), dtype=torch.float64)
    torch.testing.assert_close(actual.double(), expected, **TOLERANCES[gs.rewards.dtype])


@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}{p or ''}" for n, p in CASES])
@settings(max_examples=15)
@given(gs=groups(dtype=torch.float64))
def test_estimator_matches_oracle_float64(name: str, params: dict, gs: Groups) -> None:
    _check(name, params, gs)


@pytest.mark.parametrize("name", ESTIMATORS.names())
@settings(max_examples=8)
@given(gs=groups(max_g=64, max_n=3))
def test_estimator_matches_oracle_float32_and_larger_groups(name: str, gs: Groups) -> None:
    _check(name, {}, gs)


@pytest.mark.parametrize("name", FILTERS.names())
@settings(max_examples=30)
@given(gs=groups(dtype=torch.float64))
def test_filter_matches_oracle(name: str, gs: Groups) -> None:
    assert FILTERS.build(name)(gs).tolist() == oracles.FILTER_ORACLES[name](gs)
