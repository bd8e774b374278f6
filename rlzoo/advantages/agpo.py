"""AGPO v1: GRPO with a fixed advantage for all-correct and all-wrong groups."""

from dataclasses import dataclass
from typing import ClassVar

from jaxtyping import Float
from torch import Tensor

from rlzoo.advantages import ESTIMATORS
from rlzoo.advantages.grpo import GRPO
from rlzoo.group_stats import GroupStats


@ESTIMATORS.register("agpo")
@dataclass(frozen=True)
class AGPO(GRPO):
    """AGPO v1: GRPO, but an all-equal group gets pos at reward_max, neg at reward_min (arXiv 2503.15952 v1).

    Implementation details:

    1. Everything else is GRPO with the same parameters (``scale``, ``std_ddof``, ``eps``,
       ``singleton``); see ``grpo``.
    2. The rule comes from the first author's code (``ChenLi09/verl``, "agpo m1",
       ``compute_agpo_outcome_advantage``), which tests ``mean == 1`` / ``mean == 0`` with zero std,
       i.e. rewards in {0, 1}: defaults ``reward_max=1.0``, ``reward_min=0.0``, ``pos=1.0``,
       ``neg=-1.0``. With ±1 rewards set ``reward_min=-1.0``.
    3. "All equal" is max == min over the valid completions, with the common value compared exactly
       to ``reward_max`` / ``reward_min``; an all-equal group at any other value gets 0.
    4. The rule needs at least two valid completions: a group of one follows the ``singleton``
       policy (the authors' code special-cases groups of one before the rule, giving them std 1).
    5. DAPO-style dynamic sampling removes exactly the groups this rule acts on: combined with the
       ``dapo`` or ``reinforce_rej`` filter the rule is inert (``acts_on_all_equal_groups``; the
       recipe warns).
    """

    reward_max: float = 1.0
    reward_min: float = 0.0
    pos: float = 1.0
    neg: float = -1.0

    acts_on_all_equal_groups: ClassVar[bool] = True

    def bias(self, stats: GroupStats) -> Float[Tensor, " n"] | None:
        value = stats.mean  # exactly the common value in an all-equal group
        top = value == self.reward_max
        bottom = (value == self.reward_min) & ~top
        rule = stats.equal & (stats.count > 1)
        dtype = value.dtype  # arithmetic on masks: torch.where is several times slower on CPU
        fixed = top.to(dtype).mul_(self.pos).add_(bottom.to(dtype).mul_(self.neg)).mul_(rule)
        singleton = super().bias(stats)
        return fixed if singleton is None else fixed + singleton
