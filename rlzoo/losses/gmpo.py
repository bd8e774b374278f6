"""GMPO: the geometric mean of the token importance ratios, clipped token by token in log space."""

from dataclasses import dataclass
from typing import ClassVar

import torch

from rlzoo.losses import POLICY_LOSSES
from rlzoo.losses._common import (
    LOG_RATIO_CLAMP,
    Level,
    PolicyTerm,
    flag_fraction,
    sampler_metrics,
    token_inputs,
)
from rlzoo.params import check
from rlzoo.types import PolicyBatch


@POLICY_LOSSES.register("gmpo")
@dataclass(frozen=True)
class GMPO:
    """GMPO: L_i = -A_i·exp(mean_t ĉ_t), ĉ_t = Δ_t clipped to [-eps_low, eps_high] on A_i's side, Δ = logp - old_logp (arXiv 2507.20673).

    Implementation details:

    1. ``eps_low = eps_high = 0.4`` *in log space*, a ratio range of (e^-0.4, e^0.4) (the paper;
       TRL's ``GMPOConfig.epsilon``). verl's ``geo_mean`` reuses ``clip_ratio_low/high``, default 0.2
       (its example script sets 0.4).
    2. One-sided clip on the side of A_i, PPO's min in log space: A > 0 caps Δ at ``eps_high``,
       A < 0 floors it at ``-eps_low``. Written ``where(clipped, bound, Δ)``: a clipped token has
       exactly 0 gradient, the others ``-A_i·R_i/|o_i|``. A = 0 gives 0 whichever side (TRL takes
       the max branch). ``clip/high`` and ``clip/low`` are the clipped fractions.
    3. Δ is clamped to ±20 first (the other losses' clamp; TRL and verl do not clamp): the side
       left open by the one-sided clip could otherwise overflow ``exp``.
    4. Sequence-level: L_i sits on every token, and the Objective pairs it only with
       ``seq_mean_token_mean``, which gives mean_i L_i over the step's sequences (TRL: the mean over
       the micro-batch, / grad-accumulation steps; verl: ``torch.mean`` over the micro-batch,
       ignoring ``loss_agg_mode``). A sequence with no counted token is left out of that mean (TRL
       counts it with the constant -A_i).
    5. Per-token advantages are averaged over each sequence's counted tokens first (verl); with one
       advantage per sequence that is A_i itself.
    6. verl multiplies L_i by the geometric mean of its rollout IS weights; TRL ignores them, and so
       does this loss. A KL term is the Objective's: TRL's β·(sequence mean of k3) added to L_i is
       the same thing under ``seq_mean_token_mean``.
    """

    eps_low: float = 0.4
    eps_high: float = 0.4
    uses_advantages: ClassVar[bool] = True
    level: ClassVar[Level] = "sequence"

    def __post_init__(self) -> None:
        check(self, "eps_low", 0 <= self.eps_low < float("inf"), "must be a finite number >= 0 (log space)")
        check(self, "eps_high", 0 <= self.eps_high < float("inf"), "must be a finite number >= 0 (log space)")

    def __call__(self, batch: PolicyBatch) -> PolicyTerm:
        logp, old_logp, adv, mask = token_inputs(batch)
        length = mask.sum(1).clamp_min(1).to(logp.dtype)
        seq_adv = adv.sum(1) / length
        a = seq_adv[:, None]
        log_ratio = (logp - old_logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
        high = (a > 0) & (log_ratio > self.eps_high)
        low = (a < 0) & (log_ratio < -self.eps_low)
        clipped = torch.where(high, self.eps_high, torch.where(low, -self.eps_low, log_ratio))
        seq_ratio = (torch.where(mask, clipped, 0.0).sum(1) / length).exp()
        loss = (-seq_adv * seq_ratio)[:, None].expand_as(logp)
        metrics = sampler_metrics(batch, log_ratio.detach().exp(), mask)
        metrics |= {"clip/low": flag_fraction(low, mask), "clip/high": flag_fraction(high, mask)}
        return PolicyTerm(loss, metrics)
