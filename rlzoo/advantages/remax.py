"""ReMax: the reward of a greedy completion as the baseline."""

from dataclasses import dataclass
from typing import ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from rlzoo.advantages import ESTIMATORS
from rlzoo.errors import DataError
from rlzoo.group_stats import all_valid, require_finite
from rlzoo.params import component_label
from rlzoo.types import Groups


@ESTIMATORS.register("remax")
@dataclass(frozen=True)
class ReMax:
    """ReMax: A = r - r(greedy completion of the same prompt) (arXiv 2310.10505).

    Implementation details:

    1. Needs ``groups.greedy_rewards`` ``[n]``: one greedy (argmax-decoded) rollout per prompt,
       scored like the others; the trainer generates it. Missing: a DataError.
    2. The baseline does not depend on the sampled completions, so any group size works, one
       included, and groups are independent.
    3. No std, no eps. Invalid completions get 0.
    """

    needs_greedy_baseline: ClassVar[bool] = True  # reads groups.greedy_rewards

    def __call__(self, groups: Groups) -> Float[Tensor, "n g"]:
        who = component_label(self)
        greedy = groups.greedy_rewards
        if greedy is None:
            raise DataError(
                f"{who}: needs groups.greedy_rewards (the reward of one greedy completion per prompt, "
                "shape [n]); build Groups with greedy_rewards=..."
            )
        out = groups.rewards - greedy[:, None]
        if not all_valid(groups.mask):
            out = torch.where(groups.mask, out, 0.0)
        require_finite(
            out.sum(), who, ("rewards", groups.rewards, groups.mask), ("greedy_rewards", greedy, None)
        )
        return out
