"""Clip-Cov and KL-Cov: restrain the few tokens whose advantage and log-prob covary most (entropy collapse)."""

import hashlib
from dataclasses import dataclass
from typing import ClassVar

import torch
from jaxtyping import Bool, Float
from torch import Tensor

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


def token_covariance(
    logp: Float[Tensor, "b t"], adv: Float[Tensor, "b t"], mask: Bool[Tensor, "b t"]
) -> Float[Tensor, "b t"]:
    """Cov_t = (A_t - Ā)(logp_t - mean logp), the means over this micro-batch's counted tokens; detached, 0 at padding."""
    with torch.no_grad():
        count = mask.sum().clamp_min(1)
        centred_adv = adv - torch.where(mask, adv, 0.0).sum() / count
        centred_logp = logp - torch.where(mask, logp, 0.0).sum() / count
        return torch.where(mask, centred_adv * centred_logp, 0.0)


def select_count(fraction: float, mask: Bool[Tensor, "b t"]) -> int:
    """max(⌊fraction · N⌋, 1) with N the counted tokens (the reference code's ``int(ratio * N)``)."""
    return max(int(fraction * int(mask.sum())), 1)


def _flat_to_mask(flat: Tensor, like: Bool[Tensor, "b t"]) -> Bool[Tensor, "b t"]:
    out = torch.zeros(like.numel(), dtype=torch.bool, device=like.device)
    return out.index_fill_(0, flat, True).view_as(like)


_PRIME = 2_147_483_647  # 2^31 - 1


@POLICY_LOSSES.register("clip_cov")
@dataclass(frozen=True)
class ClipCov:
    """Clip-Cov: PPO clip, except ℓ = 0 (no gradient) on a random few unclipped tokens with Cov in (cov_low, cov_high) (arXiv 2505.22617).

    Implementation details:

    1. Cov_t = (A_t - Ā)(logp_t - mean logp) under stop-gradient, the means over the counted tokens
       of **this micro-batch** (and process), as in the reference implementations (the authors'
       verl recipe, verl, SkyRL): the selection, and so the loss, depends on how the step is split
       into micro-batches and processes (class marker ``depends_on_split``).
    2. Candidates: counted tokens that PPO has not clipped already and whose Cov lies strictly in
       (``cov_low``, ``cov_high``) = (1, 5) (absolute thresholds, not quantiles). n = max(⌊fraction·N⌋, 1)
       of them, N = the micro-batch's counted tokens, ``fraction = 2e-4``, are drawn uniformly at
       random (all of them when there are at most n); their loss is set to 0, so their gradient
       stops, and they still count in the denominator. ``cov/selected`` is their fraction.
    3. Every other token: PPO clip ℓ = max(-A·r, -A·clip(r, 1-eps_low, 1+eps_high)), no dual-clip.
       ``eps_low = eps_high = 0.2`` (verl and SkyRL defaults); the authors' recipes set 1
       (a clip range of [0, 2]).
    4. The draw is reproducible: the reference code uses an unseeded ``torch.randperm``. Here it is
       a pure function of ``seed`` and the (row, column) positions of the micro-batch's candidates,
       hashed into a generator seed: a rerun, a recomputation or appended padding gives the same
       draw, and micro-batches with different candidates get unrelated draws (the same candidate
       positions give the same draw). Draws differ between CPU and CUDA generators.
    5. The log-ratio is clamped to ±20 before ``exp``; advantages and ``old_logp`` are detached.
    """

    fraction: float = 2e-4
    cov_low: float = 1.0
    cov_high: float = 5.0
    eps_low: float = 0.2
    eps_high: float = 0.2
    seed: int = 0
    uses_advantages: ClassVar[bool] = True
    level: ClassVar[Level] = "token"
    depends_on_split: ClassVar[bool] = True

    def __post_init__(self) -> None:
        inf = float("inf")
        check(self, "fraction", 0 < self.fraction <= 1, "must be in (0, 1] (a fraction, not a percentage)")
        check(self, "cov_low", -inf < self.cov_low < inf, "must be a finite number")
        check(self, "cov_high", self.cov_low < self.cov_high < inf, "must be finite and > cov_low")
        check(self, "eps_low", 0 <= self.eps_low <= 1, "must be in [0, 1]")
        check(self, "eps_high", 0 <= self.eps_high < inf, "must be a finite number >= 0")
        check(self, "seed", 0 <= self.seed < 2**63, "must be in [0, 2**63)")

    def __call__(self, batch: PolicyBatch) -> PolicyTerm:
        logp, old_logp, adv, mask = token_inputs(batch)
        ratio = importance_ratio(logp, old_logp, mask, "token")
        low = (adv < 0) & (ratio < 1 - self.eps_low)
        high = (adv > 0) & (ratio > 1 + self.eps_high)
        clipped = low | high
        cov = token_covariance(logp, adv, mask)
        candidates = mask & ~clipped & (cov > self.cov_low) & (cov < self.cov_high)
        selected = self.draw(candidates, select_count(self.fraction, mask))
        loss = torch.where(clipped, -adv * ratio.clamp(1 - self.eps_low, 1 + self.eps_high), -adv * ratio)
        loss = torch.where(selected, 0.0, loss)
        metrics = sampler_metrics(batch, ratio, mask)
        metrics |= {
            "clip/low": flag_fraction(low, mask),
            "clip/high": flag_fraction(high, mask),
            "cov/selected": flag_fraction(selected, mask),
        }
        return PolicyTerm(loss, metrics)

    def draw(self, candidates: Bool[Tensor, "b t"], n: int) -> Bool[Tensor, "b t"]:
        """``n`` of the candidates uniformly at random (all when there are at most ``n``), seeded by the batch."""
        flat = candidates.flatten().nonzero().squeeze(1)
        k = flat.numel()
        if k > n:
            t = candidates.shape[1]
            h = (flat // t * 65_537 + flat % t) % _PRIME  # (row, column): unchanged by appended padding
            digest = torch.stack([h.sum(), (h * h % _PRIME).sum()]).tolist()
            key = hashlib.blake2b(f"{self.seed}:{k}:{digest[0]}:{digest[1]}".encode(), digest_size=8).digest()
            generator = torch.Generator(device=flat.device).manual_seed(int.from_bytes(key, "big") >> 1)
            flat = flat[torch.randperm(k, generator=generator, device=flat.device)[:n]]
        return _flat_to_mask(flat, candidates)


@POLICY_LOSSES.register("kl_cov")
@dataclass(frozen=True)
class KLCov:
    """KL-Cov: ℓ = -A·r, plus beta·|logp - old_logp| on the top fraction of tokens by Cov (arXiv 2505.22617).

    Implementation details:

    1. Cov_t = (A_t - Ā)(logp_t - mean logp) under stop-gradient, the means over the counted tokens
       of **this micro-batch** (and process), as in the reference implementations: the selection
       depends on how the step is split (class marker ``depends_on_split``).
    2. The k = max(⌊fraction·N⌋, 1) counted tokens with the largest Cov get the penalty; N = the
       micro-batch's counted tokens. ``fraction`` is a fraction, not a percentage: 2e-4 (verl's
       ``kl_cov_ratio``, = 0.02 %, the authors' 32B setting); the authors' 7B recipe uses 0.2 %
       (2e-3) and SkyRL's ``kl_cov_frac`` defaults to 0.2 (20 %). ``cov/selected`` is their fraction.
    3. Ties are broken by position (a stable sort; ``topk`` is arbitrary there). Only tokens with
       Cov > 0 can be selected: when every Cov is 0 (all advantages of the micro-batch equal, e.g. 0)
       the reference code still penalises k arbitrary tokens; here nothing is, so zero advantages
       give zero gradient.
    4. ``beta = 1`` (the authors' recipes, SkyRL; verl's yaml sets ``ppo_kl_coef`` 0.1, its code
       falls back to 1). No ratio clipping on any token. The log-ratio inside ``exp`` is clamped
       to ±20; the penalty uses the unclamped |logp - old_logp| (its gradient at 0 is 0).
    5. Advantages and ``old_logp`` are detached; padding is zeroed first and never selected.
    """

    fraction: float = 2e-4
    beta: float = 1.0
    uses_advantages: ClassVar[bool] = True
    level: ClassVar[Level] = "token"
    depends_on_split: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check(self, "fraction", 0 < self.fraction <= 1, "must be in (0, 1] (a fraction, not a percentage)")
        check(self, "beta", 0 <= self.beta < float("inf"), "must be a finite number >= 0")

    def __call__(self, batch: PolicyBatch) -> PolicyTerm:
        logp, old_logp, adv, mask = token_inputs(batch)
        ratio = importance_ratio(logp, old_logp, mask, "token")
        cov = token_covariance(logp, adv, mask)
        valid = cov[mask]  # row-major over the counted tokens
        k = select_count(self.fraction, mask) if valid.numel() else 0
        order = torch.sort(valid, descending=True, stable=True).indices[:k]
        order = order[valid[order] > 0]
        selected = _flat_to_mask(mask.flatten().nonzero().squeeze(1)[order], mask)
        penalty = torch.where(selected, self.beta * (logp - old_logp).abs(), 0.0)
        metrics = sampler_metrics(batch, ratio, mask) | {"cov/selected": flag_fraction(selected, mask)}
        return PolicyTerm(-adv * ratio + penalty, metrics)
