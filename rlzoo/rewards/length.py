"""Group-aware length shapers: AGPO length bonus, Kimi k1.5 length reward, cosine length reward, DAPO overlong."""

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from rlzoo.params import check
from rlzoo.rewards import SHAPERS
from rlzoo.rewards._shaping import valid_correct
from rlzoo.types import Groups


def _span_fraction(
    lengths: Float[Tensor, "n g"], over: Bool[Tensor, "n g"]
) -> tuple[Float[Tensor, "n g"], Bool[Tensor, "n 1"]]:
    """``(L - Lmin) / (Lmax - Lmin)`` with Lmin, Lmax over the ``over`` completions of each group,
    and whether that span is > 0 (where it is not, the fraction is meaningless and must not be used)."""
    lmin = torch.where(over, lengths, math.inf).amin(1, keepdim=True)
    lmax = torch.where(over, lengths, -math.inf).amax(1, keepdim=True)
    span = lmax - lmin
    spread = span > 0
    return (lengths - torch.where(spread, lmin, 0.0)) / torch.where(spread, span, 1.0), spread


@SHAPERS.register("agpo_length")
@dataclass(frozen=True)
class AGPOLength:
    """AGPO length bonus: correct answers in mixed groups get + alpha·(1 - (L - Lmin)/(Lmax - Lmin)) (arXiv 2503.15952 v1).

    Implementation details:

    1. From the first author's code (``ChenLi09/verl``, ``AGPORewardManager``, "modification 2"):
       only groups with both correct and wrong answers change, and only their correct answers.
    2. Lmin and Lmax are over the correct answers of the group; the shortest gets ``alpha``,
       the longest 0. ``alpha = 0.1``.
    3. ``Lmax == Lmin`` (one correct answer, or all the same length): ``degenerate="skip"``
       changes nothing (the verl fork); ``"full"`` gives every correct answer ``alpha`` (the
       authors' ColossalAI branch).
    4. Invalid completions are untouched and play no part in Lmin, Lmax or "mixed".
    5. Needs ``groups.correct``; applied before the advantage, so it orders correct answers by
       length inside mixed groups.
    """

    needs_verdict: ClassVar[bool] = True  # reads groups.correct

    alpha: float = 0.1
    degenerate: Literal["skip", "full"] = "skip"

    def __post_init__(self) -> None:
        check(self, "alpha", self.alpha >= 0 and math.isfinite(self.alpha), "must be a finite number >= 0")

    def __call__(self, groups: Groups) -> Groups:
        correct = valid_correct(self, groups)
        wrong = groups.mask & ~correct
        mixed = correct.any(1, keepdim=True) & wrong.any(1, keepdim=True)
        frac, spread = _span_fraction(groups.lengths.to(groups.rewards.dtype), correct)
        bonus = torch.where(spread, self.alpha * (1 - frac), self.alpha if self.degenerate == "full" else 0.0)
        return groups.replace(rewards=torch.where(correct & mixed, groups.rewards + bonus, groups.rewards))


@SHAPERS.register("kimi_length")
@dataclass(frozen=True)
class KimiLength:
    """Kimi length reward: λ = 0.5 - (L - Lmin)/(Lmax - Lmin); correct + w·λ, wrong + w·min(0, λ) (arXiv 2501.12599 §2.3.3).

    Implementation details:

    1. Lmin and Lmax are over all valid completions of the prompt, correct or not.
    2. All lengths equal (or one valid completion): λ = 0, rewards unchanged.
    3. The bonus lies in [-0.5, 0.5]·weight; a wrong answer never gains (min(0, λ)).
    4. ``weight`` (default 1.0) scales the length reward before it is added.
    5. Invalid completions are untouched and excluded from Lmin, Lmax. Needs ``groups.correct``.
    """

    needs_verdict: ClassVar[bool] = True  # reads groups.correct

    weight: float = 1.0

    def __post_init__(self) -> None:
        check(self, "weight", self.weight >= 0 and math.isfinite(self.weight), "must be a finite number >= 0")

    def __call__(self, groups: Groups) -> Groups:
        correct = valid_correct(self, groups)
        frac, spread = _span_fraction(groups.lengths.to(groups.rewards.dtype), groups.mask)
        lam = torch.where(spread, 0.5 - frac, 0.0)
        bonus = self.weight * torch.where(correct, lam, lam.clamp(max=0.0))
        return groups.replace(rewards=torch.where(groups.mask, groups.rewards + bonus, groups.rewards))


@SHAPERS.register("cosine_length")
@dataclass(frozen=True)
class CosineLength:
    """Cosine length reward: η_min + ½(η_max - η_min)(1 + cos(πL/Lmax)), η by correctness (arXiv 2502.03373).

    Implementation details:

    1. From the official code (``eddycmu/demystify-long-cot``, ``CosineScaledSparseReward``) and
       its section 4 scripts: correct answers go from ``max_value_correct = 2`` at L = 0 to
       ``min_value_correct = 1`` at L = Lmax; wrong ones from ``min_value_wrong = -10`` at L = 0
       to ``max_value_wrong = 0`` at L = Lmax (the code swaps min and max for wrong answers).
    2. ``L + margin >= max_length`` gets ``exceed_length = -10``. The official code uses a margin
       of 16 against off-by-one in its length count; ours are exact, so ``margin = 0``: a
       completion that used the whole budget (truncated) is over-length.
    3. ``max_length`` is the generation budget (the code's ``max_new_tokens``); required.
    4. ``combine="replace"`` (the paper: the cosine value is the reward) or ``"add"``.
    5. The official code adds its repetition penalty to wrong answers inside this reward; in
       rlzoo use the ``repetition_penalty`` reward function.
    6. Invalid completions are untouched. Needs ``groups.correct``. Per completion: the group
       plays no part, so it is trivially permutation-equivariant.
    """

    needs_verdict: ClassVar[bool] = True  # reads groups.correct

    max_length: int
    min_value_correct: float = 1.0
    max_value_correct: float = 2.0
    min_value_wrong: float = -10.0
    max_value_wrong: float = 0.0
    exceed_length: float = -10.0
    margin: int = 0
    combine: Literal["replace", "add"] = "replace"

    def __post_init__(self) -> None:
        check(self, "max_length", self.max_length >= 1, "must be >= 1")
        check(self, "margin", 0 <= self.margin < self.max_length, "must be in [0, max_length)")
        check(self, "max_value_wrong", self.max_value_wrong <= 0, "must be <= 0 (as the official code)")
        check(
            self,
            "min_value_wrong",
            self.min_value_wrong <= self.max_value_wrong,
            "must be <= max_value_wrong",
        )
        check(
            self,
            "min_value_correct",
            self.min_value_correct <= self.max_value_correct,
            "must be <= max_value_correct",
        )

    def __call__(self, groups: Groups) -> Groups:
        correct = valid_correct(self, groups)
        lengths = groups.lengths.to(groups.rewards.dtype)
        at_zero = torch.where(correct, lengths.new_tensor(self.max_value_correct), self.min_value_wrong)
        at_max = torch.where(correct, lengths.new_tensor(self.min_value_correct), self.max_value_wrong)
        value = at_max + 0.5 * (at_zero - at_max) * (1 + torch.cos(math.pi * lengths / self.max_length))
        value = torch.where(groups.lengths + self.margin >= self.max_length, self.exceed_length, value)
        shaped = value if self.combine == "replace" else groups.rewards + value
        return groups.replace(rewards=torch.where(groups.mask, shaped, groups.rewards))


@SHAPERS.register("dapo_overlong")
@dataclass(frozen=True)
class DAPOOverlong:
    """DAPO soft overlong punishment: 0 up to Lmax - Lcache, then ((Lmax - Lcache) - L)/Lcache, -1 beyond Lmax (arXiv 2503.14476 Eq. 13).

    Implementation details:

    1. Added to the reward, scaled by ``factor`` (verl's ``overlong_penalty_factor``, 1.0).
    2. Floored at ``-factor`` beyond ``max_length`` as Eq. 13 (verl has no floor: its lengths
       cannot pass the budget).
    3. The paper: ``max_length = 20480``, ``cache_length = 4096``; both required here since
       they depend on the generation budget. L counts EOS, as our ``Groups.lengths``.
    4. Per completion; needs no verdict; invalid completions are untouched.
    """

    max_length: int
    cache_length: int
    factor: float = 1.0

    def __post_init__(self) -> None:
        check(self, "max_length", self.max_length >= 1, "must be >= 1")
        check(self, "cache_length", 1 <= self.cache_length <= self.max_length, "must be in [1, max_length]")
        check(self, "factor", self.factor >= 0 and math.isfinite(self.factor), "must be a finite number >= 0")

    def __call__(self, groups: Groups) -> Groups:
        over = groups.lengths.to(groups.rewards.dtype) - (self.max_length - self.cache_length)
        penalty = self.factor * (-over / self.cache_length).clamp(min=-1.0, max=0.0)
        return groups.replace(rewards=torch.where(groups.mask, groups.rewards + penalty, groups.rewards))
