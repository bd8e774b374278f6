"""Group filters: which completions of a step take part in the update."""

from dataclasses import dataclass
from typing import ClassVar, Literal

from jaxtyping import Bool
from torch import Tensor

from rlzoo.advantages import FILTERS
from rlzoo.errors import DataError
from rlzoo.group_stats import GroupStats
from rlzoo.params import component_label
from rlzoo.types import Groups


@FILTERS.register("reinforce_rej")
@dataclass(frozen=True)
class ReinforceRej:
    """Reinforce-Rej: keep the groups whose valid rewards differ, min < max (arXiv 2504.11343).

    Implementation details:

    1. With correctness rewards this drops the prompts whose completions are all correct or all
       wrong: they carry no learning signal once a baseline is used and, with ``A = r``, only
       push lengths around.
    2. Equality is exact (max == min over valid completions); groups of one are dropped.
    3. ``mode="drop"`` (default) removes the completions from the step; ``"zero"`` keeps them in
       the loss denominators with advantage 0, as the released code (``RLHFlow/Minimal-RL``) does.
    4. Invalid completions are never kept.
    """

    mode: Literal["drop", "zero"] = "drop"

    removes_all_equal_groups: ClassVar[bool] = True

    def __call__(self, groups: Groups) -> Bool[Tensor, "n g"]:
        stats = GroupStats.of(groups, component_label(self))
        return groups.mask & ~stats.equal[:, None]


@FILTERS.register("dapo")
@dataclass(frozen=True)
class DAPOFilter:
    """DAPO dynamic sampling: keep the groups with 0 < #correct < #valid (arXiv 2503.14476, Eq. 11).

    Implementation details:

    1. Reads ``groups.correct`` (the verifier's verdict), not the rewards: shaped rewards (length
       penalties) do not hide an all-correct group. Missing: a DataError.
    2. ``#valid`` counts the group's valid completions (the paper's G when none is invalid).
    3. The paper over-samples prompts and refills the batch until it is full; that loop, and its
       bound on extra generation rounds, belong to the trainer. This filter only says which
       completions to keep.
    4. ``mode="drop"`` (default) removes the completions from the step; ``"zero"`` keeps them in
       the loss denominators with advantage 0. Invalid completions are never kept.
    5. It removes exactly the groups AGPO's all-equal rule acts on.
    """

    needs_verdict: ClassVar[bool] = True  # reads groups.correct

    mode: Literal["drop", "zero"] = "drop"

    removes_all_equal_groups: ClassVar[bool] = True

    def __call__(self, groups: Groups) -> Bool[Tensor, "n g"]:
        if groups.correct is None:
            raise DataError(
                f"{component_label(self)}: needs groups.correct (the verifier's verdict per "
                "completion, bool [n, g]); build Groups with correct=..."
            )
        valid = groups.mask
        ones = valid.new_ones(valid.shape[1], dtype=groups.rewards.dtype)
        right = (groups.correct & valid).to(ones.dtype) @ ones
        total = valid.to(ones.dtype) @ ones
        return valid & ((right > 0) & (right < total))[:, None]
