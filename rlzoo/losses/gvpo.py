"""GVPO: regress the group-centred implied reward β·log(π/π_old) onto the group-centred reward."""

from dataclasses import dataclass
from typing import ClassVar

import torch

from rlzoo.errors import DataError
from rlzoo.losses import POLICY_LOSSES
from rlzoo.losses._common import (
    Level,
    PolicyTerm,
    check_whole_groups,
    group_sums,
    importance_ratio,
    num_groups,
    require_group_ids,
    sampler_metrics,
    token_inputs,
)
from rlzoo.params import check, component_label
from rlzoo.types import PolicyBatch


@POLICY_LOSSES.register("gvpo")
@dataclass(frozen=True)
class GVPO:
    """GVPO: per group L = ½ Σ_i [(R_θ[i] - mean R_θ) - (r[i] - mean r)]² / (g - 1), R_θ = β Σ_t log(π/π_old) (arXiv 2504.19599).

    Implementation details:

    1. ``beta = 0.1`` (the paper). ``R_θ`` sums the log-ratio over the counted tokens (no length
       normalisation) against ``old_logp``, as the authors' verl recipe (``compute_policy_loss_gvpo``).
    2. Uses ``batch.rewards`` and ``batch.group_ids``, not the advantages: ``mean r`` is taken here
       over the group's sequences that have a counted token. ``g`` is that count; a group with one
       such sequence divides by zero and raises.
    3. The authors detach ``mean R_θ``; since the residuals of a group sum to zero, the gradient
       is the same with or without the detach, and here it is kept attached.
    4. Group-level: every token of group k carries L_k, and the Objective pairs it only with
       ``group_token_mean``, which gives the mean of L_k over the groups of the step (the authors
       sum their micro-batch's groups). Needs whole groups per micro-batch; with ``batch.totals``
       a split group raises.
    5. No clip and no reference model: the KL to π_old is implicit in the regression.
    """

    beta: float = 0.1
    uses_advantages: ClassVar[bool] = False
    level: ClassVar[Level] = "group"

    def __post_init__(self) -> None:
        check(self, "beta", 0 < self.beta < float("inf"), "must be a finite number > 0")

    def __call__(self, batch: PolicyBatch) -> PolicyTerm:
        who = component_label(self)
        group_ids = require_group_ids(who, batch)
        if batch.rewards is None:
            raise DataError(f"{who}: needs batch.rewards (one reward per sequence)")
        logp, old_logp, _, mask = token_inputs(batch)
        check_whole_groups(who, batch, mask)
        k = num_groups(batch)
        valid = mask.any(1)
        implied = self.beta * (logp - old_logp).sum(1)
        rewards = torch.where(valid, batch.rewards.detach(), 0.0).to(implied.dtype)
        count = group_sums(valid.to(implied.dtype), group_ids, k)
        singles = count == 1
        if bool(singles.any()):
            raise DataError(
                f"{who}: group {int(singles.nonzero()[0])} has a single sequence; GVPO divides by g - 1. "
                "Use at least 2 completions per prompt, or drop the group"
            )
        centre = count.clamp_min(1)
        residual = (implied - (group_sums(implied, group_ids, k) / centre)[group_ids]) - (
            rewards - (group_sums(rewards, group_ids, k) / centre)[group_ids]
        )
        per_group = (
            0.5
            * group_sums(torch.where(valid, residual.square(), 0.0), group_ids, k)
            / (count - 1).clamp_min(1)
        )
        loss = per_group[group_ids][:, None].expand_as(logp)
        ratio = importance_ratio(logp, old_logp, mask, "token").detach()
        return PolicyTerm(loss, sampler_metrics(batch, ratio, mask))
