"""Support shared by the policy losses, KL estimators, aggregations and the objective (registers nothing).

Every helper here is vectorised over the whole micro-batch. Values at positions where the mask is
False may be anything (NaN, inf): :func:`token_inputs` replaces them by 0 with ``torch.where``
before any arithmetic, so they reach neither the loss nor, through a ``0 * inf``, the gradient.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from rlzoo.errors import DataError
from rlzoo.types import LossTotals, PolicyBatch

Level = Literal["token", "sequence", "group"]

# verl and OpenRLHF clamp the log importance ratio to +-20 before exp.
LOG_RATIO_CLAMP = 20.0


@dataclass(frozen=True, eq=False)
class PolicyTerm:
    """What a policy loss returns.

    Args:
        loss: per-token loss ``[b, t]``; ignored where the mask is False. A sequence-level loss
            repeats its sequence's value on every token, a group-level loss its group's value on
            every token of the group; the aggregation then weighs it (see ``Objective``).
        metrics: detached scalar tensors, means over the micro-batch's counted tokens.
    """

    loss: Float[Tensor, "b t"]
    metrics: Mapping[str, Tensor]


@runtime_checkable
class PolicyLoss(Protocol):
    """``batch -> PolicyTerm``; ``level`` says over what unit the loss is constant."""

    @property
    def level(self) -> Level: ...

    @property
    def uses_advantages(self) -> bool: ...

    def __call__(self, batch: PolicyBatch) -> PolicyTerm: ...


@runtime_checkable
class KLEstimator(Protocol):
    """``(logp, ref_logp) -> per-token KL [b, t]`` with ``d = ref_logp - logp``."""

    def __call__(self, logp: Tensor, ref_logp: Tensor) -> Tensor: ...


@runtime_checkable
class Aggregation(Protocol):
    """Per-token values ``[b, t]`` -> scalar, as ``sum(weights * values)`` with global normalisers.

    ``unit`` is what the aggregation weighs equally: every token, every sequence or every group.
    """

    @property
    def unit(self) -> Level: ...

    def weights(self, mask: Tensor, totals: LossTotals, group_ids: Tensor | None) -> Tensor: ...

    def __call__(
        self, values: Tensor, mask: Tensor, totals: LossTotals, group_ids: Tensor | None = None
    ) -> Tensor: ...


def token_inputs(
    batch: PolicyBatch,
) -> tuple[Float[Tensor, "b t"], Float[Tensor, "b t"], Float[Tensor, "b t"], Bool[Tensor, "b t"]]:
    """``logp``, ``old_logp`` and per-token advantages with 0 where the mask is False, and the mask."""
    mask = batch.mask
    return (
        torch.where(mask, batch.logp, 0.0),
        torch.where(mask, batch.old_logp.detach(), 0.0),
        torch.where(mask, batch.token_advantages.detach(), 0.0),
        mask,
    )


def importance_ratio(
    logp: Float[Tensor, "b t"],
    old_logp: Float[Tensor, "b t"],
    mask: Bool[Tensor, "b t"],
    level: Literal["token", "sequence"],
) -> Float[Tensor, "b t"]:
    """The importance ratio on every token; ``level="sequence"`` is GSPO's (arXiv 2507.18071).

    Token: ``exp(clamp(logp - old_logp, +-20))``. Sequence: ``s = exp(clamp(mean_t(logp - old_logp),
    +-20))`` over the counted tokens, written GSPO-token style as ``sg(s) * exp(logp - sg(logp))``:
    the value is ``s`` on every token and the gradient ``s * grad logp_t``, so a per-sequence mean
    of the token losses has exactly GSPO's gradient, and per-token advantages work as in GSPO-token.
    Inputs must already be 0 where the mask is False (:func:`token_inputs`).
    """
    log_ratio = logp - old_logp
    if level == "token":
        return log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP).exp()
    seq = log_ratio.sum(1) / mask.sum(1).clamp_min(1)
    seq = seq.detach().clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return (seq[:, None] + logp - logp.detach()).exp()


def k3_value(d: Float[Tensor, "b t"]) -> Float[Tensor, "b t"]:
    """Schulman's k3 = exp(d) - d - 1 >= 0; ``exp`` sees ``d`` clamped at 20 (the ratio's clamp) so
    one token whose probability collapsed cannot overflow float32 into inf."""
    return d.clamp(max=LOG_RATIO_CLAMP).exp() - d - 1


def masked_mean(values: Float[Tensor, "b t"], mask: Bool[Tensor, "b t"]) -> Float[Tensor, ""]:
    """Detached mean over the counted tokens (0 when there are none)."""
    values = values.detach()
    return torch.where(mask, values, 0.0).sum() / mask.sum().clamp_min(1)


def sampler_metrics(
    batch: PolicyBatch, ratio: Float[Tensor, "b t"], mask: Bool[Tensor, "b t"]
) -> dict[str, Tensor]:
    """``ratio/mean``, ``ratio/max``, ``kl/sampler`` (k3 of old vs current) and ``entropy/mean``."""
    with torch.no_grad():
        r = torch.where(mask, ratio, 0.0)
        d = torch.where(mask, batch.old_logp - batch.logp, 0.0)
        metrics = {
            "ratio/mean": r.sum() / mask.sum().clamp_min(1),
            "ratio/max": torch.cat([r.flatten(), r.new_zeros(1)]).amax(),
            "kl/sampler": masked_mean(k3_value(d), mask),
        }
        if batch.entropy is not None:
            metrics["entropy/mean"] = masked_mean(batch.entropy, mask)
    return metrics


def flag_fraction(flags: Bool[Tensor, "b t"], mask: Bool[Tensor, "b t"]) -> Float[Tensor, ""]:
    """Fraction of the counted tokens where ``flags`` is True."""
    return (flags & mask).sum() / mask.sum().clamp_min(1)


def totals_dtype(logp: Tensor) -> torch.dtype:
    """Normalisers in float32, or float64 when the log-probs are float64."""
    return torch.promote_types(logp.dtype, torch.float32)


def group_sums(values: Float[Tensor, " b"], group_ids: Int[Tensor, " b"], k: int) -> Float[Tensor, " k"]:
    """Sum of ``values`` per group id in ``range(k)``."""
    return values.new_zeros(k).index_add_(0, group_ids, values)


def require_group_ids(who: str, batch: PolicyBatch) -> Int[Tensor, " b"]:
    if batch.group_ids is None:
        raise DataError(f"{who}: needs batch.group_ids (the group, i.e. prompt, of each sequence)")
    return batch.group_ids


def count_totals(
    mask: Bool[Tensor, "b t"], group_ids: Int[Tensor, " b"] | None, num_groups: int, dtype: torch.dtype
) -> LossTotals:
    """Tokens, sequences (with at least one counted token) and tokens per group id of one micro-batch."""
    per_seq = mask.sum(1).to(dtype)
    group_tokens = per_seq.new_zeros(num_groups)
    if group_ids is not None:
        bad = (group_ids < 0) | (group_ids >= num_groups)
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            raise DataError(
                f"group_ids[{i}] = {int(group_ids[i])} is outside range(num_groups={num_groups}); group ids "
                "number the groups of the whole optimiser step"
            )
        group_tokens = group_sums(per_seq, group_ids, num_groups)
    return LossTotals(
        tokens=per_seq.sum(), sequences=(per_seq > 0).sum().to(dtype), group_tokens=group_tokens
    )


def num_groups(batch: PolicyBatch) -> int:
    """Groups of the step: from ``batch.totals`` when given, else ``max(group_ids) + 1`` (0 without ids)."""
    if batch.totals is not None:
        return batch.totals.group_tokens.shape[0]
    if batch.group_ids is None or batch.group_ids.numel() == 0:
        return 0
    return int(batch.group_ids.max()) + 1


def check_whole_groups(who: str, batch: PolicyBatch, mask: Bool[Tensor, "b t"]) -> None:
    """Raise unless every group present in ``batch`` has all its counted tokens (per ``batch.totals``) here."""
    if batch.totals is None:
        return
    group_ids = require_group_ids(who, batch)
    local = group_sums(mask.sum(1).to(batch.totals.group_tokens.dtype), group_ids, num_groups(batch))
    split = (local > 0) & (local != batch.totals.group_tokens)
    if bool(split.any()):
        k = int(split.nonzero()[0])
        raise DataError(
            f"{who}: group {k} has {int(local[k])} of its {int(batch.totals.group_tokens[k])} counted tokens in "
            "this micro-batch; it needs whole groups, so put every completion of a prompt in the same "
            "micro-batch and process"
        )
