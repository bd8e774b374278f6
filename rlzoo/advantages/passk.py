"""GRPO pass@k: only the best completion of a group gets an advantage."""

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from rlzoo.advantages import ESTIMATORS
from rlzoo.group_stats import GroupStats, check_eps, group_sum, safe_reciprocal
from rlzoo.params import component_label
from rlzoo.types import Groups


@ESTIMATORS.register("grpo_passk")
@dataclass(frozen=True)
class GRPOPassK:
    """GRPO pass@k: A = (r_max - r_second) / (std + eps) on the unique best completion, 0 elsewhere (arXiv 2503.19595, as cited by verl).

    Implementation details (verl's ``compute_grpo_passk_outcome_advantage``):

    1. ``scale="group"`` divides by the group's std (verl's default ``norm_adv_by_std_in_grpo``),
       ``"none"`` does not. ``std_ddof=1`` (``torch.std``) and ``eps=1e-6`` as verl.
    2. Ties for the maximum give 0 to everyone (verl's top-2 then gives r_max - r_second = 0).
    3. A group with fewer than two valid completions gets 0 (verl raises).
    4. Invalid completions get 0 and are in no max or std.
    """

    scale: Literal["group", "none"] = "group"
    std_ddof: Literal[0, 1] = 1
    eps: float = 1e-6

    def __post_init__(self) -> None:
        check_eps(self)

    def __call__(self, groups: Groups) -> Float[Tensor, "n g"]:
        stats = GroupStats.of(groups, component_label(self))
        r = groups.rewards
        if r.numel() == 0:
            return torch.zeros_like(r)
        ranked = r if stats.valid is None else torch.where(groups.mask, r, -torch.inf)
        best = ranked.amax(1)
        # 1.0 on each group's maximal completions (>= is == here; a float output skips a bool pass)
        top = torch.ge(ranked, best[:, None], out=torch.empty_like(r))
        unique = (group_sum(top) == 1) & (stats.count > 1)
        # Push the maximal ones below every other completion of their group, then take the max of
        # the rest: the runner-up. A group's range is at most count · (max - mean).
        reach = float((stats.count * (best - stats.mean).clamp_min(0)).amax())
        second = torch.add(ranked, top, alpha=-min(2 * reach + 1, torch.finfo(r.dtype).max)).amax(1)
        gap = (best - second).nan_to_num_(0.0).mul_(unique)  # NaN: an empty group (-inf - -inf)
        if self.scale == "group":
            gap = gap.mul_(safe_reciprocal(stats.std(self.std_ddof, self.eps) + self.eps))
        return top.mul_(gap[:, None])
