"""KL estimators k1, k2, k3, k3_iw: hand-worked values and gradients, straight-through, float64 gradcheck."""

import math

import pytest
import torch

from rlzoo.errors import ConfigError, DataError
from rlzoo.losses import KL_ESTIMATORS, build_kl
from tests.losses.oracles import k3


def _needs_old(name: str) -> bool:
    return getattr(KL_ESTIMATORS.get(name).cls, "needs_old_logp", False)


def _call(
    name: str, logp: torch.Tensor, ref: torch.Tensor, old: torch.Tensor, **params: object
) -> torch.Tensor:
    """Call an estimator the way the Objective does: with ``old_logp`` when it declares ``needs_old_logp``."""
    kl = build_kl(name, **params)
    return kl(logp, ref, old_logp=old) if _needs_old(name) else kl(logp, ref)


PLAIN = [name for name in KL_ESTIMATORS.names() if not _needs_old(name)]
STRAIGHT_THROUGH = [
    n for n in KL_ESTIMATORS.names() if any(p.name == "straight_through" for p in KL_ESTIMATORS.get(n).params)
]

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
    assert sorted([*VALUE, "k3_iw"]) == KL_ESTIMATORS.names()  # k3_iw: test_k3_iw_vector_k1 below


@pytest.mark.parametrize("name", PLAIN)
def test_hand_worked_value_and_gradient(name: str) -> None:
    value, grad = _value_and_grad(name)
    assert value == pytest.approx(VALUE[name], rel=1e-12)
    assert grad == pytest.approx(GRAD[name], rel=1e-12)


@pytest.mark.parametrize("name", STRAIGHT_THROUGH)
def test_straight_through_keeps_the_value_and_takes_k2_gradient(name: str) -> None:
    value, grad = _value_and_grad(name, straight_through=True)
    assert value == pytest.approx(VALUE[name], rel=1e-12)
    assert grad == pytest.approx(GRAD["k2"], rel=1e-12)


@pytest.mark.parametrize("name", KL_ESTIMATORS.names())
def test_gradcheck_float64(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    logp = (-torch.rand(3, 4, generator=g, dtype=torch.float64) * 2).requires_grad_()
    ref = -torch.rand(3, 4, generator=g, dtype=torch.float64) * 2
    old = -torch.rand(3, 4, generator=g, dtype=torch.float64) * 2
    assert torch.autograd.gradcheck(lambda x: _call(name, x, ref, old), (logp,))


def test_zero_when_equal_and_k2_k3_nonnegative() -> None:
    g = torch.Generator().manual_seed(1)
    logp = -torch.rand(5, 7, generator=g, dtype=torch.float64) * 4
    ref = -torch.rand(5, 7, generator=g, dtype=torch.float64) * 4
    old = -torch.rand(5, 7, generator=g, dtype=torch.float64) * 4
    for name in KL_ESTIMATORS.names():
        assert torch.equal(_call(name, logp, logp, old), torch.zeros_like(logp))
    for name in ("k2", "k3", "k3_iw"):
        assert (_call(name, logp, ref, old) >= 0).all()


def test_k3_stays_finite_when_a_token_collapses() -> None:
    # d = 0 - (-200) = 200: exp(200) overflows float32; the clamp keeps it finite.
    out = build_kl("k3")(torch.tensor([[-200.0]]), torch.tensor([[0.0]]))
    assert torch.isfinite(out).all()


def test_unknown_parameter_is_named() -> None:
    with pytest.raises(ConfigError, match="straight_through"):
        build_kl("k3", straight_thru=True)


# -- k3_iw: DeepSeek-V3.2's importance-weighted ("unbiased") k3, ALGORITHMS.md II.6 -------------


def test_k3_iw_vector_k1() -> None:
    # K1: ref = -1.0, logp = -1.5, old = -1.2
    logp = torch.tensor([[-1.5]], dtype=torch.float64, requires_grad=True)
    ref, old = torch.tensor([[-1.0]], dtype=torch.float64), torch.tensor([[-1.2]], dtype=torch.float64)
    kl = build_kl("k3_iw")(logp, ref, old_logp=old)
    d = -1.0 - -1.5  # ref - logp = 0.5
    k3_hand = math.exp(d) - d - 1  # 0.148721
    ratio = math.exp(-1.5 - -1.2)  # e^-0.3 = 0.740818, not detached
    assert k3_hand == pytest.approx(0.148721, abs=5e-7) and ratio == pytest.approx(0.740818, abs=5e-7)
    assert kl.item() == pytest.approx(ratio * k3_hand, rel=1e-12)
    assert kl.item() == pytest.approx(0.110175, abs=5e-7)
    (grad,) = torch.autograd.grad(kl.sum(), logp)
    # d(r k3)/dlogp = r k3 + r (1 - e^d) = r (logp - ref) = 0.740818 * -0.5
    assert grad.item() == pytest.approx(ratio * (-1.5 - -1.0), rel=1e-12)
    assert grad.item() == pytest.approx(-0.370409, abs=5e-7)
    # A detached ratio would give r (1 - e^d) = -0.480454: the biased gradient.
    assert grad.item() != pytest.approx(ratio * (1 - math.exp(d)), rel=1e-3)


def test_k3_iw_is_k3_on_policy_and_declares_it_needs_old_logp() -> None:
    g = torch.Generator().manual_seed(2)
    logp = (-torch.rand(3, 4, generator=g, dtype=torch.float64) * 3).requires_grad_()
    ref = -torch.rand(3, 4, generator=g, dtype=torch.float64) * 3
    iw = build_kl("k3_iw")
    assert iw.needs_old_logp and not getattr(build_kl("k3"), "needs_old_logp", False)
    on_policy = iw(logp, ref, old_logp=logp.detach())
    torch.testing.assert_close(on_policy, build_kl("k3")(logp, ref), rtol=0, atol=0)
    (g_iw,) = torch.autograd.grad(on_policy.sum(), logp)
    # on-policy (r = 1) the gradient is (logp - ref)·∇logp, whose expectation is ∇KL(π || ref); k3's own is (1 - e^d)
    torch.testing.assert_close(g_iw, (logp - ref).detach(), rtol=1e-12, atol=1e-15)


def test_k3_iw_without_old_logp_says_how_to_call_it() -> None:
    logp = torch.zeros(1, 1)
    with pytest.raises(DataError, match=r"k3_iw.*needs old_logp.*kl\(logp, ref_logp, old_logp=old_logp\)"):
        build_kl("k3_iw")(logp, logp)
