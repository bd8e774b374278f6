"""MaxRL: the group-relative advantage divided by the group's mean reward (maximum-likelihood RL)."""

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from rlzoo.advantages import ESTIMATORS
from rlzoo.group_stats import GroupStats, check_eps, safe_reciprocal
from rlzoo.params import component_label
from rlzoo.types import Groups


@ESTIMATORS.register("maxrl")
@dataclass(frozen=True)
class MaxRL:
    """MaxRL: A = (r - mean) / mean where mean > 0, else 0 (arXiv 2602.02710, Algorithm 1).

    Implementation details:

    1. With binary rewards and K successes among N samples a success gets (N - K)/K and a failure
       -1: the estimator N·(r/K - 1/N) of the maximum-likelihood gradient. The paper drops the
       group when K = 0; for any reward, ``denominator="mean"`` (default, the paper and prime-rl)
       gives 0 to every group whose mean is <= 0, with no eps.
    2. ``denominator="mean_eps"``: ``(r - mean) / (mean + eps)`` everywhere, SkyRL's ``maxrl`` and
       the authors' site code (eps 1e-6). There is no mean <= 0 rule: a group of negative mean
       gets its signs flipped (``[-1, -3]`` gives ``[-0.5, +0.5]``) and a mean near 0 explodes
       (``[0.5, -0.5]`` gives ±5e5).
    3. ``denominator="abs_mean_eps"``: ``(r - mean) / (|mean| + eps)``, TRL's unmerged
       ``scale_rewards="mean"`` (eps 1e-4 there); signs kept, but a mean near 0 still explodes.
    4. ``eps`` is used by the two ``*_eps`` modes only.
    5. A group whose valid rewards are all equal gets exactly 0 (all-zero and all-one groups
       included), whatever the mode. Scale invariant: rewards times c > 0 give the same advantages.
    6. A group with one valid completion: ``singleton="zero"`` gives 0 (``r - mean = 0``);
       ``"passthrough"`` gives the raw reward (SkyRL sets mean := 0 there).
    7. Invalid completions get 0 and are left out of every mean. Groups are independent.
    """

    denominator: Literal["mean", "mean_eps", "abs_mean_eps"] = "mean"
    eps: float = 1e-6
    singleton: Literal["zero", "passthrough"] = "zero"

    def __post_init__(self) -> None:
        check_eps(self)

    def __call__(self, groups: Groups) -> Float[Tensor, "n g"]:
        stats = GroupStats.of(groups, component_label(self))
        mean = stats.mean
        if self.denominator == "mean":
            factor = safe_reciprocal(mean)  # 1/mean where mean > 0, else 0
        else:
            denom = (mean if self.denominator == "mean_eps" else mean.abs()) + self.eps
            factor = torch.where(denom != 0, denom.reciprocal(), 0.0)  # a 0 denominator meets only r - mean = 0
        bias = None
        if self.singleton == "passthrough":
            singles = stats.count == 1
            if bool(singles.any()):
                bias = torch.where(singles, mean, 0.0)
        return stats.output(factor, bias)
