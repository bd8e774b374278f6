"""CISPO: REINFORCE weighted by a clipped, detached importance ratio (MiniMax-M1)."""

from dataclasses import dataclass
from typing import ClassVar, Literal

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


@POLICY_LOSSES.register("cispo")
@dataclass(frozen=True)
class CISPO:
    """CISPO: ℓ = -sg(clip(r, 1-eps_low, 1+eps_high))·A·logp (arXiv 2506.13585 §3.1).

    Implementation details:

    1. The paper bounds only the top ("we did not impose a lower bound"): ``eps_low=None``.
    2. The paper gives no value for the cap. ``eps_high = 4.0`` (a ratio cap of 5) is the ε_max
       that TRL's documentation recommends from ScaleRL (arXiv 2510.13786). Unlike TRL, whose cap
       silently falls back to 0.2 when unset, the cap here is always explicit.
    3. Every token keeps its gradient (the weight is detached, not the token): clipping only
       bounds the weight. ``clip/high`` (``clip/low``) is the fraction of counted tokens whose
       weight was capped (raised), whatever the sign of A.
    4. ``ratio="sequence"`` weighs every token of a sequence by the clipped sequence ratio; the
       loss stays token-level (it varies with logp_t), so any aggregation fits.
    5. The log-ratio is clamped to ±20 before ``exp``; padding positions are zeroed first.
    """

    eps_low: float | None = None
    eps_high: float = 4.0
    ratio: Literal["token", "sequence"] = "token"
    uses_advantages: ClassVar[bool] = True
    level: ClassVar[Level] = "token"

    def __post_init__(self) -> None:
        check(
            self,
            "eps_low",
            self.eps_low is None or 0 <= self.eps_low < 1,
            "must be in [0, 1) or None (no lower bound, the paper)",
        )
        check(self, "eps_high", 0 <= self.eps_high < float("inf"), "must be a finite number >= 0")

    def __call__(self, batch: PolicyBatch) -> PolicyTerm:
        logp, old_logp, adv, mask = token_inputs(batch)
        ratio = importance_ratio(logp, old_logp, mask, self.ratio).detach()
        lower = None if self.eps_low is None else 1 - self.eps_low
        weight = ratio.clamp(lower, 1 + self.eps_high)
        metrics = sampler_metrics(batch, ratio, mask) | {
            "clip/high": flag_fraction(ratio > 1 + self.eps_high, mask)
        }
        if lower is not None:
            metrics["clip/low"] = flag_fraction(ratio < lower, mask)
        return PolicyTerm(-weight * adv * logp, metrics)
