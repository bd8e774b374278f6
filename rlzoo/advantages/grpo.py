"""GRPO's group-relative advantage and its scale variants (Dr. GRPO is ``scale="none"``)."""

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from rlzoo.advantages import ESTIMATORS
from rlzoo.errors import DataError
from rlzoo.registry import check, component_label
from rlzoo.types import Groups, ensure_finite


@ESTIMATORS.register("grpo")
@dataclass(frozen=True)
class GRPO:
    """GRPO: A = (r - mean_group) / (std + eps), one value for every token (arXiv 2402.03300 §4.1.2).

    Implementation details:

    1. ``std_ddof=1`` (sample std) by default, as verl, TRL, OpenRLHF and oat; the paper is silent.
    2. ``eps`` is added to the std, not under the square root; 1e-6 as verl.
    3. ``scale="group"`` divides by the group's std, ``"batch"`` by one std over every valid reward
       of the step (TRL's ``scale_rewards="batch"``), ``"none"`` not at all (Dr. GRPO, 2503.20783).
    4. A group whose valid rewards are all equal gets exactly 0 (detected with max == min, not by
       dividing a one-ulp residual by eps).
    5. A group with one valid completion: ``singleton="zero"`` gives 0, ``"passthrough"`` the raw
       reward (verl), ``"raise"`` an error.
    6. Invalid completions get 0 and are left out of every mean and std.
    """

    scale: Literal["group", "batch", "none"] = "group"
    std_ddof: Literal[0, 1] = 1
    eps: float = 1e-6
    singleton: Literal["zero", "passthrough", "raise"] = "zero"

    def __post_init__(self) -> None:
        check(self, "eps", self.eps >= 0 and self.eps == self.eps, "must be a number >= 0")

    def __call__(self, groups: Groups) -> Float[Tensor, "n g"]:
        rewards, mask = groups.rewards, groups.mask
        r = torch.where(mask, rewards, 0.0)
        count = mask.sum(1, keepdim=True)
        mean = r.sum(1, keepdim=True) / count.clamp_min(1)
        centred = torch.where(mask, rewards - mean, 0.0)
        if self.scale == "group":
            var = centred.square().sum(1, keepdim=True) / (count - self.std_ddof).clamp_min(1)
            adv = centred / (var.sqrt() + self.eps)
        elif self.scale == "batch":
            total = count.sum()
            batch_mean = r.sum() / total.clamp_min(1)
            batch_dev = torch.where(mask, rewards - batch_mean, 0.0)
            var = batch_dev.square().sum() / (total - self.std_ddof).clamp_min(1)
            adv = centred / (var.sqrt() + self.eps)
        else:
            adv = centred
        big, small = torch.where(mask, rewards, -torch.inf).amax(1), torch.where(mask, rewards, torch.inf).amin(1)
        adv = torch.where((big == small)[:, None], 0.0, adv)
        ensure_finite(adv, mask, component_label(self), "advantages")
        singles = count.squeeze(1) == 1
        if self.singleton == "passthrough":
            adv = torch.where(singles[:, None] & mask, rewards, adv)
        elif self.singleton == "raise" and bool(singles.any()):
            row = int(singles.nonzero()[0])
            raise DataError(
                f"{component_label(self)}: group {row} has a single valid completion; its std is "
                "undefined. Use a group size >= 2 or set singleton='zero' or 'passthrough'"
            )
        return adv
