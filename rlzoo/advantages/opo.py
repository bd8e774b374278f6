"""OPO: the length-weighted optimal baseline."""

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from rlzoo.advantages import ESTIMATORS
from rlzoo.group_stats import GroupStats, group_sum
from rlzoo.params import component_label
from rlzoo.types import Groups


@ESTIMATORS.register("opo")
@dataclass(frozen=True)
class OPO:
    """OPO: A = r - b, b = Σ L·r / Σ L over the group's completions (arXiv 2505.23585).

    Implementation details:

    1. ``L`` is ``groups.lengths`` (completion tokens, EOS included): the baseline that minimises
       the gradient variance when the policy is exactly on-policy and each token's gradient has
       similar magnitude. No std, no eps.
    2. Sums run over valid completions only. A group whose valid lengths are all 0 falls back to the
       plain mean (the limit of equal lengths).
    3. A group of one gets 0 (its baseline is its own reward; verl's ``opo`` gives the raw reward).
       All-equal groups get exactly 0: the baseline is formed from deviations from one member.
    """

    def __call__(self, groups: Groups) -> Float[Tensor, "n g"]:
        stats = GroupStats.of(groups, component_label(self))
        weights = stats.keep_valid(groups.lengths.to(stats.centred.dtype))
        weight_sum = group_sum(weights)
        # b - mean = Σ L·(r - mean) / Σ L: exactly 0 in an all-equal group, whose centred rewards are 0
        offset = torch.where(weight_sum > 0, group_sum(weights.mul_(stats.centred)) / weight_sum.clamp_min(1), 0.0)
        return stats.output(bias=-offset)
