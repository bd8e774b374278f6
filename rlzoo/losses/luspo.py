"""LUSPO: GSPO's sequence loss weighted by the sequence's length."""

from dataclasses import dataclass
from typing import Literal

from rlzoo.losses import POLICY_LOSSES
from rlzoo.losses._common import Level
from rlzoo.losses.ppo import PPOClip


@POLICY_LOSSES.register("luspo")
@dataclass(frozen=True)
class LUSPO(PPOClip):
    """LUSPO: L = (1/B) Σ_i |o_i|·ℓ_i, ℓ_i = -min(s_i A_i, clip(s_i, 1-eps_low, 1+eps_high) A_i), s_i = exp(mean_t(logp - old_logp)) (arXiv 2602.05261).

    Implementation details:

    1. ℓ_i is GSPO's (``ppo_clip`` with ``ratio="sequence"``, GSPO-token form: value s_i on every
       token, gradient s_i·∇logp_t); the length weighting comes from the aggregation. Pair it with
       ``seq_mean_token_sum``: Σ_i Σ_t ℓ_i / B = (1/B) Σ_i |o_i|·ℓ_i, LUSPO exactly, and TRL 1.16's
       ``loss_type="luspo"`` (``(per_token_loss * mask).sum(-1).mean()``, KL and entropy terms
       included). ``token_mean`` gives the same up to the constant B / Σ|o_i|;
       ``seq_mean_token_mean`` weighs sequences equally, which is GSPO with this clip range.
    2. So unlike ``gspo`` this loss declares itself token-level: the Objective then allows the
       length-weighted aggregations that it refuses for GSPO (PITFALLS: a per-sequence loss
       broadcast over the tokens), here on purpose.
    3. ``eps_low = 2e-3``, ``eps_high = 2.5e-3`` (the paper §5.1, as TRL's docs cite; TRL's own
       defaults are its global 0.2 / 0.2). ``dual_clip`` is ``ppo_clip``'s (TRL's ``delta``).
    4. B counts the step's sequences with at least one counted token (TRL's mean counts every row).
       The log-ratio is clamped to ±20 before ``exp``; advantages and ``old_logp`` are detached.
    """

    eps_low: float = 2e-3
    eps_high: float = 2.5e-3
    ratio: Literal["sequence"] = "sequence"

    @property
    def level(self) -> Level:
        return "token"
