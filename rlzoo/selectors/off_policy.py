"""DeepSeek-V3.2's off-policy sequence mask."""

from dataclasses import dataclass
from typing import ClassVar

import torch

from rlzoo.params import check
from rlzoo.selectors import SELECTORS
from rlzoo.types import PolicyBatch, Selection


@SELECTORS.register("off_policy_mask")
@dataclass(frozen=True)
class OffPolicyMask:
    """Off-policy sequence mask: drop sequences with A < 0 and mean_t(log μ - log π) > delta (arXiv 2512.02556).

    Implementation details:

    1. ``kl_i = Σ_t m_t (log μ_t - sg(log π_t)) / max(|o_i|, 1)`` with μ the behaviour policy:
       ``batch.rollout_logp`` (the inference engine's log-probs) when given, else ``batch.old_logp``,
       as TRL (``off_policy_mask_threshold``). On-policy with ``old_logp`` the estimate is exactly 0
       and nothing is dropped.
    2. Keep unless ``A < 0`` and ``kl_i > delta``: ``A = 0`` is kept. With per-token advantages the
       sign is read per token (as TRL).
    3. ``delta = 0.5``: the paper gives no value; TRL's docs suggest 0.5 (its default is None, off).
    4. The keep mask multiplies the per-token policy loss; the denominators still count the dropped
       sequences' tokens, and neither the KL term nor the entropy bonus is masked (as TRL).
    5. An empty sequence has kl = 0 (kept, though it has no token).
    6. Metrics: ``select/off_policy_mask/kept`` (fraction of counted tokens kept) and
       ``select/off_policy_mask/kl`` (mean kl_i over the sequences with a counted token).
    """

    delta: float = 0.5

    uses_rollout_logp: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check(self, "delta", 0 <= self.delta < float("inf"), "must be a finite number >= 0 (0.5 in TRL's docs)")

    def __call__(self, batch: PolicyBatch) -> Selection:
        mask = batch.mask
        behaviour = batch.old_logp if batch.rollout_logp is None else batch.rollout_logp
        with torch.no_grad():
            gap = torch.where(mask, behaviour - batch.logp, 0.0)
            tokens = mask.sum(1)
            kl = gap.sum(1) / tokens.clamp_min(1)
            negative = torch.where(mask, batch.token_advantages, 0.0) < 0
            keep = mask & ~(negative & (kl > self.delta)[:, None])
            counted = tokens > 0
            metrics = {
                "select/off_policy_mask/kept": keep.sum() / mask.sum().clamp_min(1),
                "select/off_policy_mask/kl": torch.where(counted, kl, 0.0).sum() / counted.sum(),  # 0/0: NaN
            }
        return Selection(keep, metrics)
