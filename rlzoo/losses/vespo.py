"""VESPO: REINFORCE weighted by a smooth, detached gamma-shaped function of the sequence importance weight."""

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from rlzoo.losses import POLICY_LOSSES
from rlzoo.losses._common import (
    LOG_RATIO_CLAMP,
    Level,
    PolicyTerm,
    importance_ratio,
    masked_mean,
    sampler_metrics,
    token_inputs,
)
from rlzoo.params import check
from rlzoo.types import PolicyBatch

# TRL clamps log w below at log(1e-8) ("to match the original implementation").
LOG_W_MIN = math.log(1e-8)
LAMBDA_MIN = 1e-4


@POLICY_LOSSES.register("vespo")
@dataclass(frozen=True)
class VESPO:
    """VESPO: ℓ_t = -φ(w_i)·A·logp_t, φ(w) = w^k·e^{λ(1-w)} (detached), w_i = Π_t π/π_old; (k, λ) by the sign of A (arXiv 2602.10693).

    Implementation details:

    1. log w_i = clamp(Σ_t m·clamp(Δ_t, ±20), log 1e-8, 20) with Δ = logp - old_logp: the sequence
       weight is a product (not length-normalised). φ = exp(λ + k·log w - λ·w), so φ(1) = 1 and the
       loss is plain REINFORCE on-policy; non-finite φ becomes 0. φ is under stop-gradient.
    2. (k, λ) = (``k_pos``, ``lambda_pos``) = (2, 3) where A >= 0 and (``k_neg``, ``lambda_neg``)
       = (3, 2) where A < 0 (TRL's defaults; its docs map them to the paper's c1, c2, not verified).
       TRL clamps λ at 1e-4; here a smaller λ is refused.
    3. Token-level (ℓ varies with logp_t), any aggregation; TRL aggregates like ``dapo``:
       ``token_mean`` over the step's tokens. With per-token advantages, (k, λ) follow each
       token's sign.
    4. Rollout correction: TRL folds its token TIS/MIS weight into w (adds Σ_t clamp(log w_IS,
       log 1e-8, 20) to log w before the outer clamp) and applies no IS weight to the loss again.
       :meth:`log_weight` takes that term (``log_is_weight``); PolicyBatch carries no such weight,
       so ``__call__`` uses π/π_old alone. TRL refuses its default ``sequence_mask`` mode here.
    5. ``vespo/phi`` is the mean of φ over the counted tokens; advantages and ``old_logp`` are detached.
    """

    k_pos: float = 2.0
    lambda_pos: float = 3.0
    k_neg: float = 3.0
    lambda_neg: float = 2.0
    uses_advantages: ClassVar[bool] = True
    level: ClassVar[Level] = "token"

    def __post_init__(self) -> None:
        inf = float("inf")
        for name in ("k_pos", "k_neg"):
            check(self, name, 0 <= getattr(self, name) < inf, "must be a finite number >= 0")
        for name in ("lambda_pos", "lambda_neg"):
            check(
                self,
                name,
                LAMBDA_MIN <= getattr(self, name) < inf,
                "must be finite and >= 1e-4 (TRL's floor)",
            )

    @staticmethod
    def log_weight(
        log_ratio: Float[Tensor, "b t"],
        mask: Bool[Tensor, "b t"],
        log_is_weight: Float[Tensor, "b t"] | None = None,
    ) -> Float[Tensor, " b"]:
        """log w_i: Σ_t of the clamped log-ratios (and of the clamped log IS weights), clamped to [log 1e-8, 20]."""
        terms = log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
        if log_is_weight is not None:
            terms = terms + log_is_weight.clamp(LOG_W_MIN, LOG_RATIO_CLAMP)
        return torch.where(mask, terms, 0.0).sum(1).clamp(LOG_W_MIN, LOG_RATIO_CLAMP)

    def phi(
        self, log_w: Float[Tensor, "b 1"] | Float[Tensor, "b t"], adv: Float[Tensor, "b t"]
    ) -> Float[Tensor, "b t"]:
        """φ = exp(λ + k·log w - λ·w) with (k, λ) by the sign of each advantage; detached, non-finite -> 0."""
        with torch.no_grad():
            positive = adv >= 0
            k = torch.full_like(adv, self.k_pos).where(positive, self.k_neg)
            lam = torch.full_like(adv, self.lambda_pos).where(positive, self.lambda_neg)
            out = (lam + k * log_w - lam * log_w.exp()).exp()
            return out.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)

    def __call__(self, batch: PolicyBatch) -> PolicyTerm:
        logp, old_logp, adv, mask = token_inputs(batch)
        log_w = self.log_weight((logp - old_logp).detach(), mask)
        phi = self.phi(log_w[:, None], adv)
        ratio = importance_ratio(logp, old_logp, mask, "token").detach()
        metrics = sampler_metrics(batch, ratio, mask) | {"vespo/phi": masked_mean(phi, mask)}
        return PolicyTerm(-phi * adv * logp, metrics)
