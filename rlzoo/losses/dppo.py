"""DPPO: a trust region on the divergence of the token distributions (TV or binary KL) instead of the ratio."""

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

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

# verl's guard inside the binary KL's second log.
_KL_EPS = 1e-8


def binary_kl(logp: Float[Tensor, "b t"], mu: Float[Tensor, "b t"]) -> Float[Tensor, "b t"]:
    """D = q·log(q/p) + (1-q)·log((1-q+1e-8)/(1-p+1e-8)), p = exp(logp), q = exp(mu): the KL between
    the two-outcome distributions "the sampled token / any other" under μ and π (verl's ``dppo_kl``)."""
    p, q = logp.exp(), mu.exp()
    return q * (mu - logp) + (1 - q) * torch.log((1 - q + _KL_EPS) / (1 - p + _KL_EPS))


@dataclass(frozen=True)
class _DPPO:
    """The shared maths of ``dppo_tv`` and ``dppo_kl``; see their docstrings."""

    delta_low: float = 0.2
    delta_high: float = 0.2
    anchor: Literal["rollout", "old"] = "rollout"
    surrogate: Literal["ratio", "logp"] = "ratio"
    cap: float | None = None
    kl_tau: float = 0.0
    uses_advantages: ClassVar[bool] = True
    level: ClassVar[Level] = "token"

    def __post_init__(self) -> None:
        inf = float("inf")
        check(self, "delta_low", 0 <= self.delta_low < inf, "must be a finite number >= 0")
        check(self, "delta_high", 0 <= self.delta_high < inf, "must be a finite number >= 0")
        check(
            self,
            "cap",
            self.cap is None or 0 < self.cap < inf,
            "must be a finite number > 0 (verl's clip_ratio_c, 3.0) or None (no cap)",
        )
        check(self, "kl_tau", 0 <= self.kl_tau < inf, "must be a finite number >= 0 (prime-rl: 1e-3)")

    def outside(
        self,
        p: Float[Tensor, "b t"],
        q: Float[Tensor, "b t"],
        logp: Float[Tensor, "b t"],
        mu: Float[Tensor, "b t"],
        adv: Float[Tensor, "b t"],
    ) -> tuple[Bool[Tensor, "b t"], Bool[Tensor, "b t"]]:
        """Tokens outside the trust region, as (A < 0 side, A > 0 side); p = π(token), q = μ(token)."""
        raise NotImplementedError

    @property
    def uses_rollout_logp(self) -> bool:
        """Reads ``batch.rollout_logp`` when the batch has them (``Objective.needs_rollout_logp``)."""
        return self.anchor == "rollout"

    def anchor_logp(self, batch: PolicyBatch) -> Float[Tensor, "b t"]:
        """μ: the engine's log-probs with ``anchor="rollout"`` when the batch has them, else ``old_logp``."""
        if self.anchor == "rollout" and batch.rollout_logp is not None:
            return batch.rollout_logp
        return batch.old_logp

    def __call__(self, batch: PolicyBatch) -> PolicyTerm:
        logp, _, adv, mask = token_inputs(batch)
        mu = torch.where(mask, self.anchor_logp(batch).detach(), 0.0)
        log_ratio = logp - mu
        ratio = log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP).exp()
        with torch.no_grad():
            low, high = self.outside(logp.exp(), mu.exp(), logp, mu, adv)
            keep = ~(low | high)
            weight = ratio.detach() if self.cap is None else ratio.detach().clamp(max=self.cap)
        # value min(r, C), gradient min(r, C)·∇logp (for "ratio"), or verl's sg(min(r, C))·logp
        surrogate = weight * (logp if self.surrogate == "logp" else (logp - logp.detach()).exp())
        loss = torch.where(keep, -adv * surrogate, 0.0)
        if self.kl_tau > 0:
            loss = loss + self.kl_tau * log_ratio.square()
        metrics = sampler_metrics(batch, ratio.detach(), mask)
        metrics |= {"clip/low": flag_fraction(low, mask), "clip/high": flag_fraction(high, mask)}
        if self.cap is not None:
            metrics["clip/cap"] = flag_fraction(ratio.detach() > self.cap, mask)
        return PolicyTerm(loss, metrics)


@POLICY_LOSSES.register("dppo_tv")
@dataclass(frozen=True)
class DPPOTV(_DPPO):
    """DPPO-TV: ℓ = -A·r·M, M = 0 where p - q leaves [-delta_low, delta_high] on A's side, p = π, q = μ (arXiv 2602.04879).

    Implementation details:

    1. Mask: M = 0 if (A > 0 and p - q > delta_high) or (A < 0 and p - q < -delta_low), else 1, a
       bound on how far the sampled token's probability moves (total variation); as p → 0 the
       difference stays bounded where the PPO ratio explodes. ``delta_low = delta_high = 0.2``
       (verl's ``clip_ratio_low/high``, SkyRL, prime-rl; verl's example script 0.15).
    2. The anchor μ: the paper anchors to the behaviour policy. ``anchor="rollout"`` (default) is
       ``batch.rollout_logp``, the engine's log-probs, when the batch has them and ``old_logp``
       otherwise (SkyRL; prime-rl always has them; verl in bypass mode). ``anchor="old"`` is always
       ``old_logp`` (verl's decoupled mode). ``old_logp``, recomputed by the trainer under the
       sampling weights, differs from the engine's only by the engine-vs-trainer mismatch.
    3. Masks are computed under stop-gradient from p = exp(logp), q = exp(μ). A masked token has
       loss 0 and gradient 0 but still counts in the aggregation's denominator. A = 0 is never
       masked (SkyRL; its loss is 0 anyway). ``clip/high`` / ``clip/low``: masked fractions with
       A > 0 / A < 0.
    4. Both surrogates give the gradient ``-A·min(r, C)·M·∇logp``, r = exp(clamp(logp - μ, ±20));
       only the value differs. ``surrogate="ratio"`` (SkyRL, prime-rl): ℓ = -A·r·M, or with a cap
       value -A·min(r, C)·M keeping that gradient (truncated IS). ``surrogate="logp"`` (verl):
       ℓ = -A·sg(min(r, C))·logp·M.
    5. ``cap = C``: None (SkyRL, prime-rl; the paper §5.4 says truncation biases, so use a large C).
       verl's code falls back to 20, but its ``clip_ratio_c`` defaults to 3.0: verl's effective
       default is ``surrogate="logp", cap=3.0`` (its example sets 10000). ``clip/cap``: capped fraction.
    6. ``kl_tau = τ`` adds τ·(logp - μ)² on every counted token, masked or not (prime-rl's
       ``kl_tau`` = 1e-3, "similar to Kimi-K2.5"); default 0, off (not in verl or SkyRL).
    7. Token-level, any aggregation: verl uses ``loss_agg_mode`` (its example
       ``seq-mean-token-sum-norm``, here ``token_sum_const``), SkyRL token-mean, prime-rl the token
       sum over the global token count.
    """

    delta_low: float = 0.2
    delta_high: float = 0.2

    def outside(
        self,
        p: Float[Tensor, "b t"],
        q: Float[Tensor, "b t"],
        logp: Float[Tensor, "b t"],
        mu: Float[Tensor, "b t"],
        adv: Float[Tensor, "b t"],
    ) -> tuple[Bool[Tensor, "b t"], Bool[Tensor, "b t"]]:
        d = p - q
        return (adv < 0) & (d < -self.delta_low), (adv > 0) & (d > self.delta_high)


@POLICY_LOSSES.register("dppo_kl")
@dataclass(frozen=True)
class DPPOKL(_DPPO):
    """DPPO-KL: ℓ = -A·r·M, M = 0 where the binary KL D(q || p) of the sampled token exceeds delta on A's side (arXiv 2602.04879).

    Implementation details:

    1. Mask: D = q·log(q/p) + (1-q)·log((1-q+1e-8)/(1-p+1e-8)), the KL between the two-outcome
       distributions "this token / any other" under μ and π (the 1e-8 is verl's);
       M = 0 if (A > 0 and p > q and D > delta_high) or (A < 0 and p < q and D > delta_low).
    2. ``delta_low = delta_high = 0.05`` (verl's example script; SkyRL's "recommended" comment).
    3. Everything else (anchor, surrogates, cap, ``kl_tau``, metrics, aggregation) as ``dppo_tv``,
       its details 2-7.
    """

    delta_low: float = 0.05
    delta_high: float = 0.05

    def outside(
        self,
        p: Float[Tensor, "b t"],
        q: Float[Tensor, "b t"],
        logp: Float[Tensor, "b t"],
        mu: Float[Tensor, "b t"],
        adv: Float[Tensor, "b t"],
    ) -> tuple[Bool[Tensor, "b t"], Bool[Tensor, "b t"]]:
        kl = binary_kl(logp, mu)
        return (adv < 0) & (p < q) & (kl > self.delta_low), (adv > 0) & (p > q) & (kl > self.delta_high)
