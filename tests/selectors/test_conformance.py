"""Every registered token selector, built with its defaults: one conformance suite, alone and in the Objective."""

import functools
import operator

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlzoo.errors import ConfigError
from rlzoo.losses import AGGREGATIONS, POLICY_LOSSES, Objective
from rlzoo.selectors import SELECTORS
from rlzoo.types import PolicyBatch, Selection, TokenSelector
from tests.losses.helpers import aggregation_spec, group_splits, rows, splits
from tests.selectors.helpers import selector_batch

SELECTOR_NAMES = SELECTORS.names()
# Parameters that make each selector keep every counted token.
KEEP_ALL = {"top_entropy": {"rho": 1.0}, "off_policy_mask": {"delta": 1e30}}


def _objectives(loss: str, **kwargs: object) -> list[Objective]:
    built = []
    for aggregation in AGGREGATIONS.names():
        try:
            built.append(Objective(policy=loss, aggregation=aggregation_spec(aggregation), **kwargs))
        except ConfigError:
            continue
    return built


def _pad(batch: PolicyBatch, extra: int) -> PolicyBatch:
    def grow(x: torch.Tensor | None, fill: object) -> torch.Tensor | None:
        return None if x is None else torch.cat([x, torch.full((x.shape[0], extra), fill, dtype=x.dtype)], 1)

    return batch.replace(
        logp=grow(batch.logp.detach(), torch.nan).requires_grad_(),
        old_logp=grow(batch.old_logp, torch.nan),
        ref_logp=grow(batch.ref_logp, torch.nan),
        entropy=grow(batch.entropy, torch.nan),
        rollout_logp=grow(batch.rollout_logp, torch.nan),
        mask=grow(batch.mask, False),
    )


def test_every_selector_has_keep_all_parameters_here() -> None:
    assert set(KEEP_ALL) == set(SELECTOR_NAMES)


@pytest.mark.parametrize("name", SELECTOR_NAMES)
@pytest.mark.parametrize("seed", range(4))
def test_selection_is_a_detached_subset_of_the_mask(name: str, seed: int) -> None:
    selector = SELECTORS.build(name)
    assert isinstance(selector, TokenSelector)
    batch = selector_batch(seed=seed)
    out = selector(batch)
    assert isinstance(out, Selection)
    assert out.keep.dtype == torch.bool and out.keep.shape == batch.mask.shape
    assert not bool((out.keep & ~batch.mask).any()) and not out.keep.requires_grad
    for key, value in out.metrics.items():
        assert key.startswith(f"select/{name}/"), key
        assert value.ndim == 0 and not value.requires_grad and not torch.isinf(value), key


@pytest.mark.parametrize("name", SELECTOR_NAMES)
def test_appending_padding_changes_nothing(name: str) -> None:
    selector = SELECTORS.build(name)
    batch = selector_batch(6, 4, seed=3)
    keep, padded = selector(batch).keep, selector(_pad(batch, 3)).keep
    assert torch.equal(padded[:, :4], keep) and not bool(padded[:, 4:].any())


@pytest.mark.parametrize("name", SELECTOR_NAMES)
def test_each_sequence_is_selected_alone_given_the_step_threshold(name: str) -> None:
    """With the step-level statistics handed in, a sequence's selection does not depend on its micro-batch."""
    objective = Objective(selectors=(name,))
    batch = selector_batch(8, 5, seed=5)
    if objective.needs_entropy_threshold:
        batch = batch.replace(entropy_threshold=objective.entropy_threshold(batch.entropy[batch.mask]))
    selector = objective.selectors[0]
    whole = selector(batch).keep
    for i in range(batch.logp.shape[0]):
        assert torch.equal(selector(rows(batch, torch.tensor([i]))).keep, whole[i : i + 1])


@pytest.mark.parametrize("name", SELECTOR_NAMES)
@pytest.mark.parametrize("loss", POLICY_LOSSES.names())
def test_any_loss_with_any_selector(name: str, loss: str) -> None:
    """Finite, no gradient at padding, and (token-level losses) none at the tokens the selector drops."""
    for objective in _objectives(loss, selectors=(name,), kl="k3", kl_coef=0.05, entropy_coef=0.01):
        batch = selector_batch(8, 6, seed=7)
        out = objective(batch)
        assert out.loss.ndim == 0 and torch.isfinite(out.loss)
        assert any(k.startswith(f"select/{name}/") for k in out.metrics)
        no_kl = Objective(policy=objective.policy, aggregation=objective.aggregation, selectors=(name,))
        (grad,) = torch.autograd.grad(no_kl(batch).loss, batch.logp)
        assert torch.isfinite(grad).all() and torch.equal(grad[~batch.mask], torch.zeros_like(grad[~batch.mask]))
        if objective.policy.level == "token":
            keep = objective.selectors[0](batch).keep
            dropped = batch.mask & ~keep
            assert torch.equal(grad[dropped], torch.zeros_like(grad[dropped]))


@pytest.mark.parametrize("name", SELECTOR_NAMES)
@pytest.mark.parametrize("loss", POLICY_LOSSES.names())
@settings(max_examples=4)
@given(seed=st.integers(0, 10_000))
def test_a_selector_that_keeps_everything_changes_nothing(name: str, loss: str, seed: int) -> None:
    for plain in _objectives(loss, kl="k2", kl_coef=0.1, entropy_coef=0.01):
        gated = Objective(
            policy=plain.policy,
            aggregation=plain.aggregation,
            kl=plain.kl,
            kl_coef=plain.kl_coef,
            entropy_coef=plain.entropy_coef,
            selectors=({"name": name, **KEEP_ALL[name]},),
        )
        batch = selector_batch(6, 5, seed=seed)
        assert bool(gated.selectors[0](batch).keep.eq(batch.mask).all())
        want, got = plain(batch), gated(batch)
        assert torch.equal(got.loss, want.loss)
        (want_grad,) = torch.autograd.grad(want.loss, batch.logp)
        (got_grad,) = torch.autograd.grad(got.loss, batch.logp)
        assert torch.equal(got_grad, want_grad)


SPLIT_FREE = [n for n in POLICY_LOSSES.names() if not getattr(POLICY_LOSSES.get(n).cls, "depends_on_split", False)]


@pytest.mark.parametrize("loss", SPLIT_FREE)
@settings(max_examples=5)
@given(data=st.data())
def test_split_invariance_with_the_step_threshold(loss: str, data: st.DataObject) -> None:
    """Counted once per step as the trainer does (totals and τ over every micro-batch), the summed
    micro-batch losses give the full-batch loss and gradient with every selector on (losses that
    declare ``depends_on_split``, Clip-Cov and KL-Cov, are per micro-batch by design)."""
    for objective in _objectives(loss, selectors=tuple(SELECTOR_NAMES), entropy_coef=0.01):
        batch = selector_batch(data.draw(st.integers(6, 9)), 4, seed=data.draw(st.integers(0, 10_000)))
        full = objective(batch).loss
        (full_grad,) = torch.autograd.grad(full, batch.logp)
        whole = objective.needs_whole_groups or objective.aggregation.unit == "group"
        parts = [rows(batch, i) for i in data.draw(group_splits(batch.group_ids) if whole else splits(batch.logp.shape[0]))]
        totals = functools.reduce(operator.add, (objective.totals(p, 3) for p in parts))
        tau = objective.entropy_threshold(torch.cat([p.entropy[objective.mask(p)] for p in parts]))
        summed = sum(objective(p.replace(totals=totals, entropy_threshold=tau)).loss for p in parts)
        (grad,) = torch.autograd.grad(summed, batch.logp)
        assert summed.item() == pytest.approx(full.item(), abs=1e-9)
        torch.testing.assert_close(
            torch.where(batch.mask, grad, 0.0), torch.where(batch.mask, full_grad, 0.0), rtol=0, atol=1e-9
        )
