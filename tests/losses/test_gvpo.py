"""gvpo: hand-worked group losses and gradients, the reference formula, groups of one, split groups."""

import pytest
import torch

from rlzoo.errors import ConfigError, DataError
from rlzoo.losses import Objective, build
from rlzoo.types import PolicyBatch
from tests.losses.helpers import random_batch, rows
from tests.losses.oracles import gvpo_group_losses

GVPO = Objective(policy="gvpo", aggregation="group_token_mean")


def _batch() -> PolicyBatch:
    # Group 0: two sequences with Σ_t log-ratio +1 and -1 (two tokens each), rewards 1, 0.
    # Group 1: three one-token sequences with log-ratio 0.5, 0, -0.5, rewards 1, 1, 0.
    log_ratio = torch.tensor(
        [[0.5, 0.5], [-0.5, -0.5], [0.5, 0.0], [0.0, 0.0], [-0.5, 0.0]], dtype=torch.float64
    )
    mask = torch.tensor([[True, True], [True, True], [True, False], [True, False], [True, False]])
    old = torch.full_like(log_ratio, -2.0)
    return PolicyBatch(
        logp=(old + log_ratio).requires_grad_(),
        old_logp=old,
        mask=mask,
        advantages=torch.zeros(5, dtype=torch.float64),
        rewards=torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0], dtype=torch.float64),
        group_ids=torch.tensor([0, 0, 1, 1, 1]),
    )


def test_hand_worked() -> None:
    batch = _batch()
    out = GVPO(batch)
    # Group 0: R = 0.1 * [1, -1], centred [0.1, -0.1]; rewards centred [0.5, -0.5]
    #   residuals [-0.4, 0.4]: L0 = ½ (0.16 + 0.16) / (2 - 1) = 0.16
    # Group 1: R = 0.1 * [0.5, 0, -0.5] (mean 0); rewards centred [1/3, 1/3, -2/3]
    #   residuals [0.05 - 1/3, -1/3, -0.05 + 2/3]: L1 = ½ Σ e² / (3 - 1)
    e1 = [0.05 - 1 / 3, -1 / 3, -0.05 + 2 / 3]
    l1 = 0.5 * sum(x * x for x in e1) / 2
    assert out.loss.item() == pytest.approx((0.16 + l1) / 2, rel=1e-12)
    (grad,) = torch.autograd.grad(out.loss, batch.logp)
    # dL_k/dlogp_t = β e_i / (g - 1) on each counted token (the residuals sum to 0), / K = 2
    want = torch.tensor(
        [
            [-0.04 / 2] * 2,
            [0.04 / 2] * 2,
            [0.1 * e1[0] / 2 / 2, 0],
            [0.1 * e1[1] / 4, 0],
            [0.1 * e1[2] / 4, 0],
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=1e-16)


def test_matches_reference_formula_and_the_authors_detached_mean() -> None:
    batch = random_batch(9, 5, seed=8, groups=3)

    def reference(detach_mean: bool) -> torch.Tensor:
        logp, old = torch.where(batch.mask, batch.logp, 0.0), torch.where(batch.mask, batch.old_logp, 0.0)
        losses = gvpo_group_losses(logp, old, batch.mask, batch.rewards, batch.group_ids, 0.1, detach_mean)
        return sum(losses) / len(losses)

    got, want = GVPO(batch).loss, reference(detach_mean=False)
    (g_got,) = torch.autograd.grad(got, batch.logp)
    (g_want,) = torch.autograd.grad(want, batch.logp)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    torch.testing.assert_close(g_got, g_want, rtol=1e-10, atol=1e-15)
    # The authors' code detaches mean R_θ; the gradient is the same (the residuals sum to zero).
    (g_detached,) = torch.autograd.grad(reference(detach_mean=True), batch.logp)
    torch.testing.assert_close(g_got, g_detached, rtol=1e-10, atol=1e-15)


def test_gradcheck_float64() -> None:
    batch = random_batch(6, 3, seed=2, groups=2, padding_nan=False)
    logp = batch.logp.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: GVPO(batch.replace(logp=x)).loss, (logp,))


def test_group_of_one_raises() -> None:
    batch = _batch().replace(group_ids=torch.tensor([0, 0, 1, 1, 2]))
    with pytest.raises(DataError, match="group 2 has a single sequence"):
        GVPO(batch)


def test_split_group_raises_when_totals_are_given() -> None:
    batch = _batch()
    totals = GVPO.totals(batch, 2)
    with pytest.raises(DataError, match="group 1 has 2 of its 3 counted tokens"):
        GVPO(rows(batch, torch.tensor([0, 1, 2, 3])).replace(totals=totals))


def test_whole_group_micro_batches_sum_to_the_full_loss() -> None:
    batch = _batch()
    totals = GVPO.totals(batch, 2)
    parts = [rows(batch, torch.tensor([2, 3, 4])), rows(batch, torch.tensor([0, 1]))]
    assert sum(GVPO(p.replace(totals=totals)).loss for p in parts).item() == pytest.approx(
        GVPO(batch).loss.item(), rel=1e-12
    )
    assert GVPO.needs_whole_groups


def test_needs_rewards_and_group_ids() -> None:
    with pytest.raises(DataError, match=r"needs batch\.rewards"):
        GVPO(_batch().replace(rewards=None))
    with pytest.raises(DataError, match=r"needs batch\.group_ids"):
        GVPO(_batch().replace(group_ids=None))


def test_beta_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"beta=0\.0"):
        build("gvpo", beta=0.0)
