"""Correctness shapers: ``binary_correct`` maps the verifier's verdict to two reward values."""

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from rlzoo.params import check
from rlzoo.rewards import SHAPERS
from rlzoo.rewards._shaping import valid_correct
from rlzoo.types import Groups


@SHAPERS.register("binary_correct")
@dataclass(frozen=True)
class BinaryCorrect:
    """Binary correctness reward: r = pos if correct else neg (Reinforce-Rej's ±1, arXiv 2504.11343).

    Implementation details:

    1. Replaces the rewards (it does not add): the paper trains on rewards in {-1, +1}; its
       released code returns {0, 1}, which removes the negative signal, so the defaults are ±1.
    2. Reads ``groups.correct`` (needed); invalid completions are untouched.
    """

    needs_verdict: ClassVar[bool] = True  # reads groups.correct

    pos: float = 1.0
    neg: float = -1.0

    def __post_init__(self) -> None:
        check(self, "pos", math.isfinite(self.pos), "must be finite")
        check(self, "neg", math.isfinite(self.neg), "must be finite")

    def __call__(self, groups: Groups) -> Groups:
        correct = valid_correct(self, groups)
        shaped = torch.where(correct, groups.rewards.new_tensor(self.pos), self.neg)
        return groups.replace(rewards=torch.where(groups.mask, shaped, groups.rewards))
