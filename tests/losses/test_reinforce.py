"""reinforce: -A·logp by hand."""

import math

import pytest
import torch

from rlzoo.losses import Objective
from rlzoo.types import PolicyBatch


def test_hand_worked() -> None:
    logp = torch.tensor([[-0.5, -1.0], [-2.0, -3.0]], dtype=torch.float64, requires_grad=True)
    old = logp.detach() - 0.1  # off-policy: reinforce ignores the ratio
    mask = torch.tensor([[True, True], [True, False]])
    batch = PolicyBatch(logp, old, mask, torch.tensor([2.0, -1.0], dtype=torch.float64))
    out = Objective(policy="reinforce", aggregation="seq_mean_token_sum")(batch)
    # sequence sums of -A logp: 2 (0.5 + 1.0) = 3 and -1 (2.0) = -2 -> mean over 2 sequences 0.5
    assert out.loss.item() == pytest.approx(0.5, rel=1e-12)
    (grad,) = torch.autograd.grad(out.loss, logp)
    torch.testing.assert_close(
        grad, torch.tensor([[-1.0, -1.0], [0.5, 0.0]], dtype=torch.float64), rtol=0, atol=0
    )
    # ratio = exp(0.1) on the three counted tokens
    assert out.metrics["ratio/mean"].item() == pytest.approx(math.exp(0.1), rel=1e-12)
