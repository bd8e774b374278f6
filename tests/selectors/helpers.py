"""Batches for the selector tests: the loss tests' random batches plus engine log-probs."""

import torch

from rlzoo.types import PolicyBatch
from tests.losses.helpers import random_batch


def selector_batch(b: int = 6, t: int = 5, *, seed: int = 0, rollout: bool = True, **kwargs: object) -> PolicyBatch:
    """``random_batch`` with ``rollout_logp`` near ``old_logp`` (NaN at padding) and some negative advantages."""
    batch = random_batch(b, t, seed=seed, **kwargs)
    if not rollout:
        return batch
    g = torch.Generator().manual_seed(seed + 1)
    noise = 0.6 * torch.rand(batch.logp.shape, generator=g, dtype=batch.logp.dtype)
    rollout_logp = torch.where(batch.mask, batch.old_logp + noise, torch.nan)
    return batch.replace(rollout_logp=rollout_logp)
