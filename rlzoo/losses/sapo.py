"""SAPO: a soft, temperature-controlled gate on the importance ratio instead of a hard clip."""

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from rlzoo.losses import POLICY_LOSSES
from rlzoo.losses._common import Level, PolicyTerm, importance_ratio, sampler_metrics, token_inputs
from rlzoo.params import check
from rlzoo.types import PolicyBatch


@POLICY_LOSSES.register("sapo")
@dataclass(frozen=True)
class SAPO:
    """SAPO: ℓ = -(4/τ)·σ(τ(r - 1))·A, τ = tau_pos if A > 0 else tau_neg (arXiv 2511.20347).

    Implementation details:

    1. ``tau_pos = 1.0``, ``tau_neg = 1.05`` (the paper, TRL and verl); A = 0 takes ``tau_neg``
       (its loss is 0 either way).
    2. The gate's slope at r = 1 is 1, so on-policy the gradient is the plain policy gradient;
       far from r = 1 it decays smoothly instead of dropping to 0 at a clip boundary.
    3. No clip, so no ``clip/*`` metrics. The log-ratio is clamped to ±20 before ``exp``.
    4. ``ratio="sequence"`` gates GSPO's sequence ratio (GSPO-token form): sequence-level, so the
       Objective pairs it with ``seq_mean_token_mean`` only.
    """

    tau_pos: float = 1.0
    tau_neg: float = 1.05
    ratio: Literal["token", "sequence"] = "token"
    uses_advantages: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check(self, "tau_pos", 0 < self.tau_pos < float("inf"), "must be a finite number > 0")
        check(self, "tau_neg", 0 < self.tau_neg < float("inf"), "must be a finite number > 0")

    @property
    def level(self) -> Level:
        return self.ratio

    def __call__(self, batch: PolicyBatch) -> PolicyTerm:
        logp, old_logp, adv, mask = token_inputs(batch)
        ratio = importance_ratio(logp, old_logp, mask, self.ratio)
        tau = torch.full_like(adv, self.tau_pos).where(adv > 0, self.tau_neg)
        gate = torch.sigmoid(tau * (ratio - 1)) * (4 / tau)
        return PolicyTerm(-gate * adv, sampler_metrics(batch, ratio, mask))
