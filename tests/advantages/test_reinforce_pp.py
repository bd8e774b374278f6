"""REINFORCE++ and REINFORCE++-baseline: token-weighted batch whitening."""

import math

import torch

from rlzoo.advantages import ESTIMATORS
from tests.advantages.strategies import make


def test_hand_worked_token_weighting() -> None:
    # r = [1, 0], L = [3, 1]: tokens 1, 1, 1, 0 -> mean 0.75,
    # var = (3·0.25² + 0.75²)/4 = (0.1875 + 0.5625)/4 = 0.1875; A = (r - 0.75)/sqrt(0.1875 + 1e-8)
    adv = ESTIMATORS.build("reinforce_pp")(make([[1, 0]], lengths=[[3, 1]]))
    s = math.sqrt(0.1875 + 1e-8)
    torch.testing.assert_close(adv, torch.tensor([[0.25 / s, -0.75 / s]]), rtol=1e-6, atol=1e-7)


def test_hand_worked_baseline() -> None:
    # centred [[0.5, -0.5], [0, 0]], L [[3, 1], [2, 2]]: tokens 0.5×3, -0.5×1, 0×4
    # mean = (1.5 - 0.5)/8 = 0.125; var = (3·0.375² + 0.625² + 4·0.125²)/8 = 0.875/8 = 0.109375
    adv = ESTIMATORS.build("reinforce_pp_baseline")(make([[1, 0], [1, 1]], lengths=[[3, 1], [2, 2]]))
    s = math.sqrt(0.109375 + 1e-8)
    expected = torch.tensor([[0.375 / s, -0.625 / s], [-0.125 / s, -0.125 / s]])
    torch.testing.assert_close(adv, expected, rtol=1e-6, atol=1e-7)


def test_invalid_completions_and_zero_lengths() -> None:
    # valid [1 (L=1), 0 (L=1), 5 (L=0)]: tokens 1, 0 -> mean 0.5, var 0.25; the L=0 completion is
    # whitened too ((5 - 0.5)/0.5 = 9) but weighs nothing; the invalid one is 0
    gs = make([[1, 0, 5, 3]], lengths=[[1, 1, 0, 7]], mask=[[True, True, True, False]])
    s = math.sqrt(0.25 + 1e-8)
    expected = torch.tensor([[0.5 / s, -0.5 / s, 4.5 / s, 0.0]])
    torch.testing.assert_close(ESTIMATORS.build("reinforce_pp")(gs), expected, rtol=1e-6, atol=1e-7)


def test_all_equal_batch_is_exactly_zero_and_no_tokens_is_zero() -> None:
    estimator = ESTIMATORS.build("reinforce_pp")
    assert torch.equal(estimator(make([[0.1] * 3, [0.1] * 3], lengths=[[1, 2, 3], [4, 5, 6]])), torch.zeros(2, 3))
    assert torch.equal(estimator(make([[1, 0]], lengths=[[0, 0]])), torch.zeros(1, 2))


def test_unbiased_token_variance_as_verl() -> None:
    # r = [1, 0], L = [3, 1]: tokens 1, 1, 1, 0 -> mean 0.75; Σ (x - mean)² = 0.75;
    # std_ddof=0: var = 0.75/4 = 0.1875 (OpenRLHF); std_ddof=1: var = 0.75/3 = 0.25 (verl's masked_whiten)
    gs = make([[1, 0]], lengths=[[3, 1]])
    for name in ("reinforce_pp", "reinforce_pp_baseline"):
        s = math.sqrt(0.25 + 1e-8)
        adv = ESTIMATORS.build(name, std_ddof=1)(gs)
        # the baseline variant centres first (r - 0.5 = ±0.5): the same up to a constant shift
        torch.testing.assert_close(adv, torch.tensor([[0.25 / s, -0.75 / s]]), rtol=1e-6, atol=1e-7)
    assert ESTIMATORS.build("reinforce_pp").std_ddof == 0


def test_unbiased_variance_with_one_token_clamps_the_divisor() -> None:
    # one token in the batch (the other completion has length 0): divisor max(1 - 1, 1) = 1, var 0
    adv = ESTIMATORS.build("reinforce_pp", std_ddof=1)(make([[1, 0]], lengths=[[1, 0]]))
    assert bool(torch.isfinite(adv).all()) and adv[0, 0] == 0.0
