"""Estimators without a baseline, from "A Minimalist Approach to LLM Reasoning": the reward, and RAFT's."""

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from rlzoo.advantages import ESTIMATORS
from rlzoo.group_stats import all_valid, require_finite
from rlzoo.params import component_label
from rlzoo.types import Groups


def _valid_rewards(groups: Groups, who: str) -> Float[Tensor, "n g"]:
    """The rewards where valid, 0 elsewhere (a new tensor), after checking that they are finite."""
    r = groups.rewards
    out = r.clone() if all_valid(groups.mask) else torch.where(groups.mask, r, 0.0)
    require_finite(out.sum(), who, ("rewards", r, groups.mask))
    return out


@ESTIMATORS.register("reinforce")
@dataclass(frozen=True)
class Reinforce:
    """REINFORCE with no baseline: A = r (arXiv 2504.11343, Reinforce-Rej's advantage).

    Implementation details:

    1. No mean subtraction and no std: the reward is the advantage. The paper uses rewards in
       {-1, +1} (its released code returns {0, 1}, which removes the negative signal); the
       ``reinforce_rej`` recipe maps correctness to ±1.
    2. The paper's rejection of all-correct and all-wrong groups is the ``reinforce_rej`` filter,
       not part of this estimator.
    3. Invalid completions get 0.
    """

    def __call__(self, groups: Groups) -> Float[Tensor, "n g"]:
        return _valid_rewards(groups, component_label(self))


@ESTIMATORS.register("raft")
@dataclass(frozen=True)
class RAFT:
    """RAFT: A = max(r, 0), i.e. fine-tune on the positive samples only (arXiv 2504.11343; RAFT 2304.06767).

    Implementation details:

    1. With rewards in {-1, +1} this keeps the correct completions with weight 1 and drops the
       wrong ones (weight 0); with the plain log-likelihood loss it is rejection-sampling fine-tuning,
       with the PPO clip it is RAFT++.
    2. Invalid completions get 0.
    """

    def __call__(self, groups: Groups) -> Float[Tensor, "n g"]:
        return _valid_rewards(groups, component_label(self)).clamp_min_(0.0)
