"""PPO's clipped surrogate with token or sequence (GSPO) importance ratios, clip-higher and dual-clip."""

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from rlzoo.losses import POLICY_LOSSES
from rlzoo.losses._common import (
    Level,
    PolicyTerm,
    flag_fraction,
    importance_ratio,
    sampler_metrics,
    token_inputs,
)
from rlzoo.params import check
from rlzoo.types import PolicyBatch


@POLICY_LOSSES.register("ppo_clip")
@dataclass(frozen=True)
class PPOClip:
    """PPO clip: ℓ = -min(r·A, clip(r, 1-eps_low, 1+eps_high)·A), r = π/π_old (arXiv 1707.06347).

    Implementation details:

    1. ``eps_low = eps_high = 0.2`` (the paper); DAPO's clip-higher is ``eps_high=0.28``.
    2. The log-ratio is clamped to ±20 before ``exp`` (verl, OpenRLHF); outside it the gradient is 0.
    3. Written as ``where(clipped, -A·clip(r), -A·r)`` with ``clipped = (A > 0 & r > 1+eps_high) |
       (A < 0 & r < 1-eps_low)``: the same values as the min, and exactly 0 gradient on clipped
       tokens (no tie split). Those flags are the ``clip/high`` and ``clip/low`` metrics.
    4. ``dual_clip = c`` (arXiv 1912.09729, c = 3 there): for A < 0 also ``ℓ <= -c·A``, i.e. the
       loss stops growing (zero gradient) once r > c; its fraction is ``clip/dual``. Default None
       (off: the PPO paper; TRL has no dual-clip). verl's vanilla PPO loss always applies it
       (``clip_ratio_c = 3.0``), so ``dual_clip=3.0`` reproduces verl.
    5. ``ratio="sequence"`` uses GSPO's length-normalised sequence ratio (arXiv 2507.18071) in the
       GSPO-token form (value s on every token, gradient s·∇logp_t). The loss is then
       sequence-level: the Objective pairs it only with an aggregation that weighs every sequence
       the same (``seq_mean_token_mean``), which gives GSPO's gradient exactly.
    6. Advantages and ``old_logp`` are detached; padding positions are zeroed before any arithmetic.
    """

    eps_low: float = 0.2
    eps_high: float = 0.2
    dual_clip: float | None = None
    ratio: Literal["token", "sequence"] = "token"
    uses_advantages: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check(self, "eps_low", 0 <= self.eps_low < 1, "must be in [0, 1)")
        check(self, "eps_high", 0 <= self.eps_high < float("inf"), "must be a finite number >= 0")
        check(
            self,
            "dual_clip",
            self.dual_clip is None or 1 < self.dual_clip < float("inf"),
            "must be > 1 (3 in the paper) or None",
        )

    @property
    def level(self) -> Level:
        return self.ratio

    def __call__(self, batch: PolicyBatch) -> PolicyTerm:
        logp, old_logp, adv, mask = token_inputs(batch)
        ratio = importance_ratio(logp, old_logp, mask, self.ratio)
        low = (adv < 0) & (ratio < 1 - self.eps_low)
        high = (adv > 0) & (ratio > 1 + self.eps_high)
        loss = torch.where(low | high, -adv * ratio.clamp(1 - self.eps_low, 1 + self.eps_high), -adv * ratio)
        metrics = sampler_metrics(batch, ratio, mask)
        metrics |= {"clip/low": flag_fraction(low, mask), "clip/high": flag_fraction(high, mask)}
        if self.dual_clip is not None:
            dual = (adv < 0) & (ratio > self.dual_clip)
            loss = torch.where(dual, -self.dual_clip * adv, loss)
            metrics["clip/dual"] = flag_fraction(dual, mask)
        return PolicyTerm(loss, metrics)


@POLICY_LOSSES.register("gspo")
@dataclass(frozen=True)
class GSPO(PPOClip):
    """GSPO: PPO clip on the sequence ratio s = exp(mean_t(logp - old_logp)), eps 3e-4/4e-4 (arXiv 2507.18071).

    Implementation details:

    1. ``ppo_clip`` with ``ratio="sequence"`` and the paper's clip range (eps_low = 3e-4,
       eps_high = 4e-4); everything else is shared (see ``ppo_clip``).
    2. GSPO-token form: per-token advantages are allowed; with one advantage per sequence the
       gradient is exactly GSPO's.
    3. Sequence-level: aggregate with ``seq_mean_token_mean`` (one value per sequence, mean over
       sequences); the Objective rejects length-weighted aggregations.
    """

    eps_low: float = 3e-4
    eps_high: float = 4e-4
    ratio: Literal["sequence"] = "sequence"
