"""REINFORCE++: rewards whitened over every valid token of the batch, with or without a group baseline."""

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from rlzoo.advantages import ESTIMATORS
from rlzoo.group_stats import GroupStats, all_valid, check_eps, require_finite
from rlzoo.params import component_label
from rlzoo.types import Groups


def whiten_tokens(
    values: Float[Tensor, "n g"],
    groups: Groups,
    eps: float,
    who: str,
    *,
    std_ddof: int = 0,
    overwrite: bool = False,
) -> Float[Tensor, "n g"]:
    """``(x - mean) / sqrt(var + eps)`` with token-weighted batch statistics; 0 where invalid.

    ``std_ddof``: the variance divides the token-weighted sum of squares by ``max(tokens - ddof, 1)``
    (0: population, OpenRLHF; 1: unbiased, verl's ``masked_whiten``).
    ``overwrite``: ``values`` is a scratch tensor the result may be written into.

    Computed on ``z = (x - min) / s`` with ``s`` the power of two just above the batch's range (an
    exact division): the sums neither overflow nor underflow whatever the reward scale, and the
    final factor ``1 / sqrt(var_z + eps / s²)`` is formed in float64. One pass per step, the
    weights included: about nine passes over ``[n, g]`` in all.
    """
    mask = groups.mask
    dense = all_valid(mask)
    if values.numel() == 0 or not (dense or bool(mask.any())):
        return torch.zeros_like(values)
    weights = groups.lengths.to(values.dtype)
    if dense:
        low, high = torch.aminmax(values)
    else:  # invalid values may be NaN: replace them before any arithmetic
        weights.mul_(mask)
        low = torch.where(mask, values, torch.inf).amin()
        high = torch.where(mask, values, -torch.inf).amax()
        values = torch.where(mask, values, low)
    require_finite(high - low, who, ("rewards", groups.rewards, mask))
    tokens, low, span = float(weights.sum()), float(low), float(high - low)
    if tokens == 0 or span == 0:  # nothing to weigh, or every valid value equal: exactly 0
        return torch.zeros_like(values)
    inv = math.ldexp(1.0, -min(max(math.frexp(span)[1], -125), 127))  # z in [0, 1)
    # z = (x - low)·inv in one pass, exact because inv is a power of two
    z = torch.add(values.new_tensor(-low * inv), values, alpha=inv, out=values if overwrite else None)
    z.sub_(torch.dot(weights.flatten(), z.flatten()) / tokens)
    var_z = float(torch.dot(weights.mul_(z).flatten(), z.flatten())) / max(tokens - std_ddof, 1.0)
    out = z.mul_(1.0 / math.sqrt(var_z + eps * inv * inv))
    return out if dense else out.mul_(mask)


@ESTIMATORS.register("reinforce_pp")
@dataclass(frozen=True)
class ReinforcePP:
    """REINFORCE++: A = (r - mean_tok) / sqrt(var_tok + eps) over all valid tokens of the batch (arXiv 2501.03262).

    Implementation details:

    1. Whitening is over tokens: a completion of ``L`` tokens (``groups.lengths``) counts ``L``
       times in the batch mean and variance (outcome reward, γ = 1: every token's return is the
       completion's reward).
    2. ``std_ddof=0`` (default): the token-weighted population variance, Σ w (x - mean)² / N over
       the N valid tokens (OpenRLHF, the paper's authors' framework); ``std_ddof=1``: the unbiased
       variance, / (N - 1), as verl's ``masked_whiten`` (``masked_var(unbiased=True)``). The
       divisor is clamped at 1 (verl raises when N = 1). The two differ by sqrt(N / (N - 1)).
    3. ``eps = 1e-8`` goes under the square root, as verl's ``masked_whiten`` (OpenRLHF clamps the
       variance at 1e-8 instead: the same unless the std is below 1e-4).
    4. Invalid completions get 0 and are in no statistic; valid completions of length 0 are
       whitened but weigh nothing. No valid token in the batch: all 0.
    5. If every valid reward of the batch is equal the result is exactly 0 (max == min), not a
       one-ulp residual divided by sqrt(eps).
    6. Batch-level: one group's advantages depend on every group (``couples_groups``). A KL
       penalty in the reward is a separate component.
    """

    eps: float = 1e-8
    std_ddof: Literal[0, 1] = 0

    couples_groups: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_eps(self)

    def __call__(self, groups: Groups) -> Float[Tensor, "n g"]:
        return whiten_tokens(groups.rewards, groups, self.eps, component_label(self), std_ddof=self.std_ddof)


@ESTIMATORS.register("reinforce_pp_baseline")
@dataclass(frozen=True)
class ReinforcePPBaseline:
    """REINFORCE++-baseline: A = whiten_tok(r - mean_group) over all valid tokens of the batch (arXiv 2501.03262).

    Implementation details:

    1. The group mean (over valid completions) is subtracted first; the result is then whitened
       exactly as ``reinforce_pp`` (token-weighted; ``std_ddof=0`` population variance as
       OpenRLHF, ``1`` unbiased as verl; ``eps`` under the square root; exact 0 when everything
       is equal; batch-level).
    2. A group of one is centred to 0 before whitening (verl subtracts 0 there, keeping the raw
       reward); all-equal groups are centred to exactly 0. After whitening they share the batch's
       value ``-mean_tok / sqrt(var_tok + eps)``, as in verl and OpenRLHF.
    """

    eps: float = 1e-8
    std_ddof: Literal[0, 1] = 0

    couples_groups: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_eps(self)

    def __call__(self, groups: Groups) -> Float[Tensor, "n g"]:
        who = component_label(self)
        centred = GroupStats.of(groups, who).centred
        return whiten_tokens(centred, groups, self.eps, who, std_ddof=self.std_ddof, overwrite=True)
