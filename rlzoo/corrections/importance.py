"""Truncated and masked importance sampling against the inference engine (TIS, MIS / IcePop)."""

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from rlzoo.corrections import CORRECTIONS, Correction
from rlzoo.params import check
from rlzoo.types import PolicyBatch


@CORRECTIONS.register("importance_sampling", aliases=("vllm_importance_sampling",))
@dataclass(frozen=True)
class ImportanceSampling:
    """Importance weights trainer / engine, truncated or masked, per token or per sequence (TRL's modes).

    Implementation details (ALGORITHMS.md II.7; TRL 1.16 ``vllm_importance_sampling_*``):

    1. ``δ_t = old_logp_t - rollout_logp_t`` on the counted tokens (0 at padding), ``old_logp``
       the trainer's log-probs under the weights that sampled. ``w_tok = exp(δ_t)``;
       ``w_seq = exp(Σ_t δ_t)`` is a product over the sequence, not length-normalised, broadcast
       to its tokens.
    2. ``*_truncate`` (TIS): ``w ← clamp(w, clip_min, clip_max)``; ``*_mask`` (MIS / IcePop):
       ``w ← w · 1[clip_min ≤ w ≤ clip_max]``, a missing bound being ±∞. Both are done on
       ``log w``, so a huge gap clamps or masks instead of overflowing.
    3. TRL's defaults: ``mode="sequence_mask"``, ``clip_max=3.0``, ``clip_min=None`` (TRL's
       docstring calls token_truncate the default; its code uses sequence_mask). A truncate mode
       needs a bound.
    4. The weight is detached and multiplies the per-token policy loss after the loss (after
       clipping); the KL term, entropy bonus and normalisers are unchanged.
    5. Metrics (micro-batch values over counted tokens): ``correction/ratio_min``, ``_mean``,
       ``_max`` of the unclipped weight and ``correction/masked_frac`` (mask modes: fraction of
       counted tokens whose weight is 0).
    """

    mode: Literal["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"] = "sequence_mask"
    clip_min: float | None = None
    clip_max: float | None = 3.0

    uses_rollout_logp: ClassVar[bool] = True

    def __post_init__(self) -> None:
        for name in ("clip_min", "clip_max"):
            value = getattr(self, name)
            check(self, name, value is None or 0 < value < math.inf, "must be a finite number > 0 or None (no bound)")
        check(self, "clip_max", self.clip_min is None or self.clip_max is None or self.clip_min <= self.clip_max,
              f"must be >= clip_min={self.clip_min!r}")
        check(self, "mode", not self.mode.endswith("truncate") or (self.clip_min, self.clip_max) != (None, None),
              "truncates nothing without a bound; set clip_max (TRL: 3.0) or clip_min")

    def __call__(self, batch: PolicyBatch) -> Correction | None:
        if batch.rollout_logp is None:
            return None
        mask = batch.mask
        with torch.no_grad():
            delta = torch.where(mask, batch.old_logp - batch.rollout_logp, 0.0)
            log_w = delta if self.mode.startswith("token") else delta.sum(1, keepdim=True).expand_as(delta)
            lo = -math.inf if self.clip_min is None else math.log(self.clip_min)
            hi = math.inf if self.clip_max is None else math.log(self.clip_max)
            if self.mode.endswith("truncate"):
                weight = log_w.clamp(lo, hi).exp()
            else:
                weight = torch.where((log_w >= lo) & (log_w <= hi), log_w.exp(), 0.0)
            weight = torch.where(mask, weight, 1.0)
            raw = log_w.exp()[mask]
            counted = mask.sum().clamp_min(1)
            metrics = {
                "correction/ratio_min": raw.min() if raw.numel() else raw.new_tensor(math.nan),
                "correction/ratio_mean": raw.sum() / counted,
                "correction/ratio_max": raw.max() if raw.numel() else raw.new_tensor(math.nan),
                "correction/masked_frac": ((weight == 0) & mask).sum() / counted,
            }
        return Correction(weight, metrics)


@CORRECTIONS.register("tis")
@dataclass(frozen=True)
class TruncatedImportanceSampling(ImportanceSampling):
    """Token-level TIS with the common preset C = 2 (verl's ``rollout_is_threshold``; ALGORITHMS.md II.7)."""

    mode: Literal["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"] = "token_truncate"
    clip_max: float | None = 2.0


@CORRECTIONS.register("icepop")
@dataclass(frozen=True)
class IcePop(ImportanceSampling):
    """Token-level masking outside [0.5, 5] (IcePop; verl's ``decoupled_token_icepop`` preset)."""

    mode: Literal["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"] = "token_mask"
    clip_min: float | None = 0.5
    clip_max: float | None = 5.0
