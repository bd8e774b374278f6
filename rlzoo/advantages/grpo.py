"""GRPO's group-relative advantage and its scale variants (Dr. GRPO is ``scale="none"``)."""

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from rlzoo.advantages import ESTIMATORS
from rlzoo.errors import DataError
from rlzoo.group_stats import GroupStats, check_eps, normalise, normalised_factor
from rlzoo.params import component_label
from rlzoo.types import Groups


@ESTIMATORS.register("grpo")
@dataclass(frozen=True)
class GRPO:
    """GRPO: A = (r - mean_group) / (std + eps), one value for every token (arXiv 2402.03300 §4.1.2).

    Implementation details:

    1. ``std_ddof=1`` (sample std) by default, as verl, TRL, OpenRLHF and oat; the paper is silent.
    2. ``eps`` is added to the std, not under the square root; 1e-6 as verl.
    3. ``scale="group"`` divides by the group's std, ``"batch"`` by one std over every valid reward
       of the step (TRL's ``scale_rewards="batch"``), ``"none"`` not at all (Dr. GRPO, 2503.20783;
       also GVPO's centred rewards ``r - mean``, 2504.19599).
    4. A group whose valid rewards are all equal gets exactly 0 (detected with max == min, not by
       dividing a one-ulp residual by eps).
    5. A group with one valid completion: ``singleton="zero"`` gives 0, ``"passthrough"`` the raw
       reward (verl), ``"raise"`` an error.
    6. Invalid completions get 0 and are left out of every mean and std.
    7. Squared deviations that would overflow (or, with a tiny eps, underflow) float32 are taken
       of deviations divided by a power of two, exactly: rewards of 1e30 or 1e-30 give the right std.
    """

    scale: Literal["group", "batch", "none"] = "group"
    std_ddof: Literal[0, 1] = 1
    eps: float = 1e-6
    singleton: Literal["zero", "passthrough", "raise"] = "zero"

    def __post_init__(self) -> None:
        check_eps(self)

    @property
    def couples_groups(self) -> bool:
        """Whether one group's advantages depend on other groups (``scale="batch"``)."""
        return self.scale == "batch"

    def __call__(self, groups: Groups) -> Float[Tensor, "n g"]:
        who = component_label(self)
        # The plain case, shared with the Scorer's normalize_then_sum; a subclass's bias (AGPO) is not.
        if self.scale == "group" and self.singleton == "zero" and type(self).bias is GRPO.bias:
            return normalise(groups, who, std_ddof=self.std_ddof, eps=self.eps)
        stats = GroupStats.of(groups, who)
        factor = normalised_factor(stats, self.scale, self.std_ddof, self.eps)
        return stats.output(factor, self.bias(stats))

    def bias(self, stats: GroupStats) -> Float[Tensor, " n"] | None:
        """A per-group value added to every valid completion: the singleton policy (None: nothing)."""
        if self.singleton == "zero":
            return None
        singles = stats.count == 1
        if not bool(singles.any()):
            return None
        if self.singleton == "raise":
            row = int(singles.nonzero()[0])
            raise DataError(
                f"{component_label(self)}: group {row} has a single valid completion; its std is "
                "undefined. Use a group size >= 2 or set singleton='zero' or 'passthrough'"
            )
        return torch.where(singles, stats.mean, 0.0)
