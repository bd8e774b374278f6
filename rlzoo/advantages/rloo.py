"""RLOO: the leave-one-out baseline."""

from dataclasses import dataclass

from jaxtyping import Float
from torch import Tensor

from rlzoo.advantages import ESTIMATORS
from rlzoo.group_stats import GroupStats
from rlzoo.params import component_label
from rlzoo.types import Groups


@ESTIMATORS.register("rloo")
@dataclass(frozen=True)
class RLOO:
    """RLOO: A_i = r_i - mean_{j≠i} r_j = k/(k-1)·(r_i - mean), k valid completions (arXiv 2402.14740).

    Implementation details (Kool et al. 2019, "Buy 4 REINFORCE samples, get a baseline for free"):

    1. Computed as the scaled mean-centring ``k/(k-1)·(r - mean)``, which is the leave-one-out
       difference exactly (in exact arithmetic) and costs one mean per group.
    2. ``k`` counts the group's valid completions; invalid ones get 0 and are in no baseline.
    3. A group of one gets 0 (no other completion to form a baseline; verl's two RLOO versions
       disagree: raw reward vs 0). All-equal groups get exactly 0.
    4. No std, no eps; the reward scale passes through.
    """

    def __call__(self, groups: Groups) -> Float[Tensor, "n g"]:
        stats = GroupStats.of(groups, component_label(self))
        k = stats.count
        return stats.output(k / (k - 1).clamp_min(1))  # any finite factor where k < 2: centred is 0 there
