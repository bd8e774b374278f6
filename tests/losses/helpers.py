"""Batch builders and strategies shared by the loss tests."""

import dataclasses
import itertools
from typing import Any

import torch
from hypothesis import strategies as st
from torch import Tensor

from rlzoo.losses import AGGREGATIONS
from rlzoo.types import PolicyBatch


def aggregation_spec(name: str) -> dict[str, Any]:
    """A spec for any aggregation: required parameters (the constant C) get 7.0."""
    required = {p.name: 7.0 for p in AGGREGATIONS.get(name).params if p.required}
    return {"name": name, **required}


def random_batch(
    b: int = 6,
    t: int = 5,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    groups: int = 3,
    zero_adv: bool = False,
    padding_nan: bool = True,
) -> PolicyBatch:
    """A batch with ragged masks, group ids in range(groups), ref/entropy/rewards, NaN at padding."""
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(b, t, generator=g, dtype=dtype) * 3 - 0.05
    logp = (old + 0.3 * torch.randn(b, t, generator=g, dtype=dtype)).clamp(max=-1e-3)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    mask = torch.arange(t)[None, :] < lengths[:, None]
    adv = torch.randn(b, generator=g, dtype=dtype)
    if zero_adv:
        adv[::3] = 0.0
    group_ids = torch.arange(b) % groups
    ref = old + 0.2 * torch.randn(b, t, generator=g, dtype=dtype)
    entropy = torch.rand(b, t, generator=g, dtype=dtype) * 2
    if padding_nan:
        logp, old, ref, entropy = (torch.where(mask, x, torch.nan) for x in (logp, old, ref, entropy))
    return PolicyBatch(
        logp=logp.requires_grad_(),
        old_logp=old,
        mask=mask,
        advantages=adv,
        ref_logp=ref,
        entropy=entropy,
        rewards=torch.rand(b, generator=g, dtype=dtype).round(),
        group_ids=group_ids,
    )


def pad(batch: PolicyBatch, extra: int) -> PolicyBatch:
    """Append ``extra`` padding tokens holding NaN (and False in the mask); ``logp`` becomes a new leaf."""

    def grow(x: Tensor | None, fill: object) -> Tensor | None:
        return None if x is None else torch.cat([x, torch.full((x.shape[0], extra), fill, dtype=x.dtype)], 1)

    logp = grow(batch.logp.detach(), torch.nan).requires_grad_()
    return batch.replace(
        logp=logp,
        old_logp=grow(batch.old_logp, torch.nan),
        ref_logp=grow(batch.ref_logp, torch.nan),
        entropy=grow(batch.entropy, torch.nan),
        mask=grow(batch.mask, False),
        advantages=grow(batch.advantages, 0.0) if batch.advantages.ndim == 2 else batch.advantages,
    )


def rows(batch: PolicyBatch, index: Tensor) -> PolicyBatch:
    """The sequences ``index`` of ``batch`` (keeps the autograd graph to ``batch.logp``)."""
    changes = {}
    for f in dataclasses.fields(batch):
        value = getattr(batch, f.name)
        changes[f.name] = value[index] if isinstance(value, Tensor) and value.ndim else value  # a 0-d threshold stays
    return batch.replace(**changes)


@st.composite
def splits(draw: st.DrawFn, b: int) -> list[Tensor]:
    """A random partition of range(b) into non-empty micro-batches (in a random order)."""
    order = draw(st.permutations(list(range(b))))
    cuts = sorted(draw(st.sets(st.integers(1, b - 1), max_size=b - 1))) if b > 1 else []
    bounds = [0, *cuts, b]
    return [torch.tensor(order[s:e]) for s, e in itertools.pairwise(bounds)]


@st.composite
def group_splits(draw: st.DrawFn, group_ids: Tensor) -> list[Tensor]:
    """A random partition of the sequences that keeps every group whole."""
    groups = sorted({int(g) for g in group_ids})
    parts = draw(splits(len(groups)))
    return [torch.cat([torch.nonzero(group_ids == groups[int(k)]).flatten() for k in part]) for part in parts]
