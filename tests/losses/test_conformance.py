"""Every registered policy loss, through every aggregation it builds with: one conformance suite."""

import dataclasses
import functools
import operator

import pytest
import torch

from rlzoo.errors import ConfigError
from rlzoo.losses import AGGREGATIONS, POLICY_LOSSES, Objective, PolicyTerm, build
from rlzoo.types import PolicyBatch
from tests.losses.helpers import aggregation_spec, pad, random_batch, rows


def _objectives(name: str, **kwargs: object) -> list[Objective]:
    built = []
    for aggregation in AGGREGATIONS.names():
        try:
            built.append(Objective(policy=name, aggregation=aggregation_spec(aggregation), **kwargs))
        except ConfigError:
            continue
    return built


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
        padded = pad(batch, 3)
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


@pytest.mark.parametrize("name", POLICY_LOSSES.names())
def test_micro_batches_sum_to_the_full_batch_unless_declared_split_dependent(name: str) -> None:
    """Whole-group micro-batches with the step's totals give the full-batch loss and gradient; a loss
    whose value depends on the split (a per-micro-batch token selection) says so with the class
    marker ``depends_on_split`` and is tested in its own module instead."""
    if getattr(build(name), "depends_on_split", False):
        pytest.skip(f"{name} selects tokens per micro-batch (depends_on_split)")
    for objective in _objectives(name, kl="k3", kl_coef=0.05):
        batch = random_batch(9, 5, seed=17, groups=3)
        full = objective(batch).loss
        (full_grad,) = torch.autograd.grad(full, batch.logp)
        parts = [rows(batch, torch.tensor([i for i in range(9) if i % 3 in keep])) for keep in ({1}, {0, 2})]
        totals = functools.reduce(operator.add, (objective.totals(p, 3) for p in parts))
        loss = sum(objective(p.replace(totals=totals)).loss for p in parts)
        (grad,) = torch.autograd.grad(loss, batch.logp)
        assert loss.item() == pytest.approx(full.item(), rel=1e-10, abs=1e-12)
        torch.testing.assert_close(
            torch.where(batch.mask, grad, 0.0),
            torch.where(batch.mask, full_grad, 0.0),
            rtol=1e-10,
            atol=1e-12,
        )


def _on(batch: PolicyBatch, device: str, dtype: torch.dtype) -> PolicyBatch:
    """``batch`` on ``device`` with floats in ``dtype`` (``logp`` a new leaf)."""

    def move(x: object) -> object:
        if not isinstance(x, torch.Tensor):
            return x
        return x.to(device, dtype) if x.is_floating_point() else x.to(device)

    moved = batch.replace(**{f.name: move(getattr(batch, f.name)) for f in dataclasses.fields(batch)})
    return moved.replace(logp=moved.logp.detach().requires_grad_())


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))],
)
@pytest.mark.parametrize("name", POLICY_LOSSES.names())
def test_float32_on_the_device_agrees_with_float64_on_cpu(name: str, device: str) -> None:
    """Every tensor a loss makes lives on the batch's device; float32 is the float64 value to rounding.
    A seeded draw (clip_cov) may differ between devices: those losses are only run, twice, for equality."""
    split_dependent = getattr(build(name), "depends_on_split", False)
    for objective in _objectives(name, kl="k3", kl_coef=0.05, entropy_coef=0.01):
        batch = random_batch(8, 6, seed=23)
        here = _on(batch, device, torch.float32)
        out = objective(here)
        (grad,) = torch.autograd.grad(out.loss, here.logp)
        assert out.loss.device.type == device and grad.device.type == device
        if split_dependent:
            again = objective(_on(batch, device, torch.float32)).loss
            assert torch.equal(again, out.loss.detach())
            continue
        want = objective(batch).loss
        (want_grad,) = torch.autograd.grad(want, batch.logp)
        torch.testing.assert_close(out.loss.detach().cpu().double(), want.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(
            torch.where(batch.mask, grad.cpu().double(), 0.0),
            torch.where(batch.mask, want_grad, 0.0),
            rtol=1e-4,
            atol=1e-6,
        )
