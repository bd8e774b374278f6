"""KL estimators k1, k2, k3: hand-worked values and gradients, straight-through, float64 gradcheck."""

import math

import pytest
import torch

from rlzoo.errors import ConfigError
from rlzoo.losses import KL_ESTIMATORS, build_kl
from tests.losses.oracles import k3

# logp = -1, ref_logp = -1.5  ->  d = ref_logp - logp = -0.5
D = -0.5
VALUE = {"k1": -D, "k2": 0.5 * D * D, "k3": k3(D)}  # 0.5, 0.125, e^-0.5 - 0.5
# d/dlogp: k1 = logp - ref -> 1; k2 = d²/2 -> -d = 0.5; k3 = e^d - d - 1 -> -(e^d - 1) = 1 - e^-0.5
GRAD = {"k1": 1.0, "k2": -D, "k3": 1 - math.exp(D)}


def _value_and_grad(name: str, **params: object) -> tuple[float, float]:
    logp = torch.tensor([[-1.0]], dtype=torch.float64, requires_grad=True)
    out = build_kl(name, **params)(logp, torch.tensor([[-1.5]], dtype=torch.float64))
    (grad,) = torch.autograd.grad(out.sum(), logp)
    return out.item(), grad.item()


def test_every_estimator_is_worked_by_hand() -> None:
    assert sorted(VALUE) == KL_ESTIMATORS.names()


@pytest.mark.parametrize("name", KL_ESTIMATORS.names())
def test_hand_worked_value_and_gradient(name: str) -> None:
    value, grad = _value_and_grad(name)
    assert value == pytest.approx(VALUE[name], rel=1e-12)
    assert grad == pytest.approx(GRAD[name], rel=1e-12)


@pytest.mark.parametrize("name", KL_ESTIMATORS.names())
def test_straight_through_keeps_the_value_and_takes_k2_gradient(name: str) -> None:
    value, grad = _value_and_grad(name, straight_through=True)
    assert value == pytest.approx(VALUE[name], rel=1e-12)
    assert grad == pytest.approx(GRAD["k2"], rel=1e-12)


@pytest.mark.parametrize("name", KL_ESTIMATORS.names())
def test_gradcheck_float64(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    logp = (-torch.rand(3, 4, generator=g, dtype=torch.float64) * 2).requires_grad_()
    ref = -torch.rand(3, 4, generator=g, dtype=torch.float64) * 2
    assert torch.autograd.gradcheck(lambda x: build_kl(name)(x, ref), (logp,))


def test_zero_when_equal_and_k2_k3_nonnegative() -> None:
    g = torch.Generator().manual_seed(1)
    logp = -torch.rand(5, 7, generator=g, dtype=torch.float64) * 4
    ref = -torch.rand(5, 7, generator=g, dtype=torch.float64) * 4
    for name in KL_ESTIMATORS.names():
        assert torch.equal(build_kl(name)(logp, logp), torch.zeros_like(logp))
    assert (build_kl("k2")(logp, ref) >= 0).all()
    assert (build_kl("k3")(logp, ref) >= 0).all()


def test_k3_stays_finite_when_a_token_collapses() -> None:
    # d = 0 - (-200) = 200: exp(200) overflows float32; the clamp keeps it finite.
    out = build_kl("k3")(torch.tensor([[-200.0]]), torch.tensor([[0.0]]))
    assert torch.isfinite(out).all()


def test_unknown_parameter_is_named() -> None:
    with pytest.raises(ConfigError, match="straight_through"):
        build_kl("k3", straight_thru=True)
