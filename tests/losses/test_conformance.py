"""Every registered policy loss, through every aggregation it builds with: one conformance suite."""

import pytest
import torch

from rlzoo.errors import ConfigError
from rlzoo.losses import AGGREGATIONS, POLICY_LOSSES, Objective, PolicyTerm, build
from rlzoo.types import PolicyBatch
from tests.losses.helpers import aggregation_spec, random_batch


def _objectives(name: str, **kwargs: object) -> list[Objective]:
    built = []
    for aggregation in AGGREGATIONS.names():
        try:
            built.append(Objective(policy=name, aggregation=aggregation_spec(aggregation), **kwargs))
        except ConfigError:
            continue
    return built


def _pad(batch: PolicyBatch, extra: int) -> PolicyBatch:
    """Append ``extra`` padding tokens holding NaN (and 0 in the mask)."""

    def grow(x: torch.Tensor | None, fill: object) -> torch.Tensor | None:
        return None if x is None else torch.cat([x, torch.full((x.shape[0], extra), fill, dtype=x.dtype)], 1)

    logp = grow(batch.logp.detach(), torch.nan).requires_grad_()
    return batch.replace(
        logp=logp,
        old_logp=grow(batch.old_logp, torch.nan),
        ref_logp=grow(batch.ref_logp, torch.nan),
        entropy=grow(batch.entropy, torch.nan),
        mask=grow(batch.mask, False),
    )


@pytest.mark.parametrize("name", POLICY_LOSSES.names())
def test_builds_into_an_objective(name: str) -> None:
    assert _objectives(name), f"{name} builds with no aggregation"
    loss = build(name)
    assert loss.level in ("token", "sequence", "group") and isinstance(loss.uses_advantages, bool)
    assert isinstance(loss(random_batch(seed=1)), PolicyTerm)


@pytest.mark.parametrize("name", POLICY_LOSSES.names())
def test_finite_loss_zero_gradient_on_padding_and_detached_metrics(name: str) -> None:
    for objective in _objectives(name, kl="k3", kl_coef=0.05, entropy_coef=0.01):
        batch = random_batch(8, 6, seed=7)
        out = objective(batch)
        assert out.loss.ndim == 0 and torch.isfinite(out.loss)
        (grad,) = torch.autograd.grad(out.loss, batch.logp)
        assert torch.isfinite(grad).all()
        assert torch.equal(grad[~batch.mask], torch.zeros_like(grad[~batch.mask]))
        assert grad[batch.mask].abs().sum() > 0
        for key, value in out.metrics.items():
            assert value.ndim == 0 and not value.requires_grad and torch.isfinite(value), key
        assert {
            "loss/policy",
            "loss/kl",
            "loss/entropy",
            "ratio/mean",
            "ratio/max",
            "kl/sampler",
            "entropy/mean",
        } <= set(out.metrics)
        assert 0 <= out.metrics.get("clip/low", 0) <= 1 and 0 <= out.metrics.get("clip/high", 0) <= 1


@pytest.mark.parametrize("name", POLICY_LOSSES.names())
def test_appending_padding_changes_nothing(name: str) -> None:
    for objective in _objectives(name, kl="k2", kl_coef=0.1):
        batch = random_batch(6, 4, seed=9)
        padded = _pad(batch, 3)
        loss, padded_loss = objective(batch).loss, objective(padded).loss
        (grad,) = torch.autograd.grad(loss, batch.logp)
        (padded_grad,) = torch.autograd.grad(padded_loss, padded.logp)
        assert padded_loss.item() == pytest.approx(loss.item(), rel=1e-12, abs=1e-15)
        torch.testing.assert_close(padded_grad[:, :4], grad, rtol=1e-12, atol=1e-15)
        assert torch.equal(padded_grad[:, 4:], torch.zeros_like(padded_grad[:, 4:]))


@pytest.mark.parametrize("name", [n for n in POLICY_LOSSES.names() if build(n).uses_advantages])
def test_zero_advantages_give_zero_policy_gradient(name: str) -> None:
    for objective in _objectives(name):
        batch = random_batch(6, 4, seed=10)
        batch = batch.replace(advantages=torch.zeros_like(batch.advantages))
        (grad,) = torch.autograd.grad(objective(batch).loss, batch.logp)
        assert torch.equal(grad, torch.zeros_like(grad))


@pytest.mark.parametrize("name", [n for n in POLICY_LOSSES.names() if build(n).uses_advantages])
def test_on_policy_gradient_is_the_plain_policy_gradient(name: str) -> None:
    for objective in _objectives(name):
        batch = random_batch(6, 4, seed=12)
        batch = batch.replace(old_logp=batch.logp.detach().clone())  # ratio = 1
        plain = Objective(policy="reinforce", aggregation=objective.aggregation)
        (grad,) = torch.autograd.grad(objective(batch).loss, batch.logp)
        (want,) = torch.autograd.grad(plain(batch).loss, batch.logp)
        torch.testing.assert_close(grad, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", POLICY_LOSSES.names())
def test_an_empty_step_is_a_clean_no_op(name: str) -> None:
    for objective in _objectives(name):
        batch = random_batch(4, 3, seed=13)
        batch = batch.replace(mask=torch.zeros_like(batch.mask))
        out = objective(batch)
        (grad,) = torch.autograd.grad(out.loss, batch.logp)
        assert out.loss.item() == 0.0 and torch.equal(grad, torch.zeros_like(grad))
