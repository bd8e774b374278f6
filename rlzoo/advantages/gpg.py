"""GPG: group policy gradient, mean-centred advantages with a batch-level bias correction."""

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from rlzoo.advantages import ESTIMATORS
from rlzoo.group_stats import GroupStats, check_eps, normalised_factor
from rlzoo.params import component_label
from rlzoo.types import Groups


@ESTIMATORS.register("gpg")
@dataclass(frozen=True)
class GPG:
    """GPG: A = α·(r - mean) / F_norm, α = B / (B - M) (arXiv 2504.02546).

    Implementation details:

    1. ``B`` is the number of valid completions in the batch and ``M`` the number of them in groups
       whose valid rewards are all equal (all right or all wrong; groups of one included). Those
       groups carry no gradient; α scales the rest back up. verl's ``gpg`` estimator uses a
       different α; this follows the paper.
    2. α makes the advantages of one group depend on the whole batch (``couples_groups``).
    3. ``scale="none"`` is the paper's default ``F_norm = 1``; ``"group"`` is its ablation
       ``F_norm = std`` (``std_ddof``, ``eps`` as GRPO). The paper's threshold β_th (resample a
       batch with too few informative groups) belongs to the trainer.
    4. If every group is all-equal, every advantage is 0 (α is not formed).
    5. The paper's loss is the plain ``-A·logp`` policy gradient, chosen separately.
    """

    scale: Literal["none", "group"] = "none"
    std_ddof: Literal[0, 1] = 1
    eps: float = 1e-6

    couples_groups: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_eps(self)

    def __call__(self, groups: Groups) -> Float[Tensor, "n g"]:
        stats = GroupStats.of(groups, component_label(self))
        factor = normalised_factor(stats, self.scale, self.std_ddof, self.eps)
        total = stats.count.sum()
        informative = total - (stats.count * stats.equal).sum()
        alpha = torch.where(informative > 0, total / informative.clamp_min(1), 1.0)
        return stats.output(alpha.expand_as(stats.count) if factor is None else alpha * factor)
