"""Vectorised per-group statistics, neutral: shared by the rewards and the advantages (registers nothing).

The group-relative estimators and filters (:mod:`rlzoo.advantages`) and the reward scorer
(:class:`rlzoo.rewards.Scorer`, ``combine="normalize_then_sum"``) both use it, so neither kind of
component depends on the other; :func:`normalise` is GRPO's ``(r - mean) / (std + eps)``, the one
implementation of it.

Everything stays in the ``[n, g]`` layout the trainer holds. Reductions over the short group axis
are matrix-vector products with a ones vector (one BLAS call, as fast as or faster than
``x.sum(1)``; torch's ``x.std(1)`` / ``x.var(1)`` over a short inner axis are 10-40x slower on CPU),
and no ``[g, n]`` transposed copy is made: at g = 8 it costs as much as two broadcast passes and
would be needed twice. Per-group scalars (``[n]``) are cheap; the cost is in the passes over
``[n, g]`` (see ``benchmarks/advantages.py``), so each quantity below is computed once, on demand.

Exactness:

- Deviations are taken from an *anchor*, one valid reward of the group. In a group whose valid
  rewards are all equal every deviation is exactly 0, so its mean is exactly the common value and
  its centred rewards are exactly 0 (``mean(8 × 0.1)`` differs from 0.1 by one ulp; ``0.1 - 0.1`` does
  not). ``equal`` is ``max == min`` computed exactly as ``Σ|r - anchor| == 0``.
- Sums of squares fall back to deviations divided by a power-of-two ``scale`` near the group's mean
  absolute deviation (an exact division) when plain squares overflow or could underflow visibly,
  so rewards of any magnitude (1e30, 1e-30) give an accurate std.
- Invalid completions are replaced with 0 by ``torch.where`` before any arithmetic that could mix
  them in, so their rewards may be NaN; when every completion is valid the ``where`` passes are skipped.
"""

from dataclasses import dataclass
from functools import cached_property

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from rlzoo.errors import DataError
from rlzoo.params import check
from rlzoo.types import Groups, ensure_finite

# Below this eps, squared deviations lost to float32 underflow could show in ``std + eps``.
_EPS_HIDES_UNDERFLOW = 2.0**-40

# Per float dtype: the integer view, the exponent bits (``bits & mask`` is the largest power of two
# <= x for normal x) and the largest finite power of two.
_EXPONENT = {
    torch.float32: (torch.int32, 0x7F800000, 2.0**127),
    torch.float64: (torch.int64, 0x7FF0000000000000, 2.0**1023),
}


def check_eps(component: object) -> None:
    """The range check of an ``eps`` hyper-parameter (for ``__post_init__``): a number >= 0."""
    eps = component.eps  # type: ignore[attr-defined]
    check(component, "eps", eps >= 0 and eps == eps, "must be a number >= 0")


def safe_reciprocal(x: Tensor) -> Tensor:
    """``1 / x`` where ``x > 0``, else 0: a multiplier that leaves exact zeros exactly zero."""
    return torch.where(x > 0, x.reciprocal(), 0.0)


def require_finite(stat: Tensor, who: str, *sources: tuple[str, Tensor, Tensor | None]) -> None:
    """Raise a DataError unless the reduced statistic ``stat`` is finite.

    A NaN or infinity anywhere in the data propagates into a sum of it, so one scalar check covers
    the whole input; only on failure is each ``(name, values, mask)`` source searched for the first
    non-finite position. If every source is finite the statistic overflowed.
    """
    if bool(torch.isfinite(stat).all()):
        return
    for what, values, mask in sources:
        ensure_finite(values, mask, who, what)
    raise DataError(
        f"{who}: the rewards are too large to compute statistics in {stat.dtype} (a sum overflowed); "
        "rescale the rewards or pass float64 rewards"
    )


def all_valid(mask: Bool[Tensor, "n g"]) -> bool:
    """True when every completion is valid (one vectorised pass over the bytes; ``mask.all()`` is 20x slower)."""
    return mask.numel() == 0 or bool(mask.view(torch.uint8).min())


@dataclass(frozen=True, eq=False)
class GroupStats:
    """Statistics of the valid rewards of each group; the first ones eagerly, the rest on first use.

    Build with :meth:`of`, which checks that the valid rewards are finite. The tensors are owned by
    this object: :meth:`output` writes into ``centred``, so call it last.

    Args:
        rewards: the rewards, any values at invalid positions.
        valid: 1.0 on the completions that count, 0.0 elsewhere; None when all do (the masked
            passes are then skipped). A float mask: multiplying finite values by it is several times
            faster than ``torch.where`` on CPU.
        count: valid completions per group.
        mean: mean of each group's valid rewards (0 for an empty group); exactly the common value
            of an all-equal group.
        centred: ``r - mean`` on valid completions, 0 elsewhere; exactly 0 throughout an all-equal
            group, because it is formed from deviations from one member of the group.
    """

    rewards: Float[Tensor, "n g"]
    valid: Float[Tensor, "n g"] | None
    count: Float[Tensor, " n"]
    mean: Float[Tensor, " n"]
    centred: Float[Tensor, "n g"]

    @classmethod
    def of(cls, groups: Groups, who: str) -> "GroupStats":
        """The statistics of ``groups``; a DataError starting with ``who`` if a valid reward is not finite."""
        r, mask = groups.rewards, groups.mask
        n, g = r.shape
        if all_valid(mask):
            valid, count = None, r.new_full((n,), g)
            anchor = r[:, 0] if g else r.new_zeros(n)
            deviation = r - anchor[:, None]
        else:
            valid = mask.to(r.dtype)
            count = group_sum(valid)
            first = mask.to(torch.uint8).argmax(1, keepdim=True)
            anchor = torch.where(count > 0, r.gather(1, first).squeeze(1), 0.0)
            deviation = torch.where(mask, r - anchor[:, None], 0.0)  # the one pass that may meet NaN
        # Deviations from one member of the group: exactly 0 throughout an all-equal group.
        shift = group_sum(deviation) / (max(g, 1) if valid is None else count.clamp_min(1))
        require_finite(shift.sum(), who, ("rewards", r, mask))
        stats = cls(r, valid, count, anchor + shift, deviation.sub_(shift[:, None]))
        stats.keep_valid(stats.centred)
        return stats

    def keep_valid(self, x: Float[Tensor, "n g"]) -> Float[Tensor, "n g"]:
        """Zero the invalid entries of the finite ``x`` in place (nothing to do when all are valid)."""
        return x if self.valid is None else x.mul_(self.valid)

    def _per_count(self, x: Float[Tensor, " n"], ddof: int = 0) -> Float[Tensor, " n"]:
        """``x / max(count - ddof, 1)`` (a scalar divisor when every completion is valid)."""
        g = self.rewards.shape[1]
        return x / (max(g - ddof, 1) if self.valid is None else (self.count - ddof).clamp_min(1))

    @cached_property
    def _scratch(self) -> Float[Tensor, "n g"]:
        """One ``[n, g]`` buffer for elementwise temporaries (a fresh allocation costs a pass)."""
        return torch.empty_like(self.centred)

    @cached_property
    def spread(self) -> Float[Tensor, " n"]:
        """``Σ |r - mean|`` over valid completions: 0 exactly when max == min."""
        return group_sum(torch.abs(self.centred, out=self._scratch))

    @cached_property
    def equal(self) -> Bool[Tensor, " n"]:
        """Groups whose valid rewards are all equal (groups of one and empty groups included)."""
        return self.spread == 0

    @cached_property
    def scale(self) -> Float[Tensor, " n"]:
        """A power of two within a factor 2 of the mean absolute deviation.

        Read from the exponent bits; clamped to normal powers of two so that the reciprocal is finite
        (an all-equal group gets the smallest, harmless: its deviations are all exactly 0).
        """
        mad = self._per_count(self.spread)
        int_dtype, exponent_bits, largest = _EXPONENT[mad.dtype]
        return (mad.view(int_dtype) & exponent_bits).view(mad.dtype).clamp(torch.finfo(mad.dtype).tiny, largest)

    def _sum_sq(self, eps: float) -> tuple[Float[Tensor, " n"], Float[Tensor, " n"] | None]:
        """``(s, scale)`` with ``Σ (r - mean)² = s · scale²`` over each group's valid completions.

        The plain squares serve (``scale`` None) unless one overflowed (float32: deviations above
        ~1e19) or ``eps`` is so small that squares lost to underflow (float32: deviations below
        ~1e-19, an error of at most ~1e-22 in the std) would show next to it; then the deviations are
        first divided by the power of two ``scale``, exactly.
        """
        centred, scratch = self.centred, self._scratch
        if eps >= _EPS_HIDES_UNDERFLOW:
            plain = group_sum(torch.mul(centred, centred, out=scratch))
            if bool(torch.isfinite(plain.sum())):  # squares are >= 0: an overflow makes the sum inf
                return plain, None
        unit = torch.mul(centred, self.scale.reciprocal()[:, None], out=scratch)
        return group_sum(unit.mul_(unit)), self.scale

    def std(self, ddof: int, eps: float) -> Float[Tensor, " n"]:
        """Std of the valid rewards of each group (``ddof=1``: sample std); 0 where fewer than ddof + 1.

        Accurate wherever it shows in ``std + eps`` (see :meth:`_sum_sq`).
        """
        ss, scale = self._sum_sq(eps)
        std = self._per_count(ss, ddof).sqrt_()
        return std if scale is None else std.mul_(scale)

    def batch_std(self, ddof: int, eps: float) -> Float[Tensor, ""]:
        """Std of all valid rewards of the batch, from the group statistics (Chan et al.'s pairwise update).

        ``SS = Σ_groups [SS_group + count·(mean_group - mean_batch)²]``, in float64 on ``[n]`` vectors.
        """
        ss, scale = self._sum_sq(eps)
        ss = ss.double() if scale is None else ss.double() * scale.double().square()
        count, mean = self.count.double(), self.mean.double()
        total = count.sum()
        batch_mean = (count * mean).sum() / total.clamp_min(1)
        ss = ss.sum() + (count * (mean - batch_mean).square()).sum()
        return (ss / (total - ddof).clamp_min(1)).sqrt().to(self.rewards.dtype)

    def output(
        self, factor: Float[Tensor, " n"] | None = None, bias: Float[Tensor, " n"] | None = None
    ) -> Float[Tensor, "n g"]:
        """``(r - mean) · factor + bias`` per group, 0 on invalid completions, written into ``centred``."""
        out = self.centred
        if bias is None:
            return out if factor is None else out.mul_(factor[:, None])
        if factor is None:
            out.add_(bias[:, None])
        elif out.shape[1] < 32:  # one broadcast pass instead of two pays off on short rows only
            torch.addcmul(bias[:, None], out, factor[:, None], out=out)
        else:
            out.mul_(factor[:, None]).add_(bias[:, None])
        return self.keep_valid(out)


def group_sum(x: Float[Tensor, "n g"]) -> Float[Tensor, " n"]:
    """Row sums as one matrix-vector product (faster than ``x.sum(1)`` over a short row on CPU)."""
    return x @ x.new_ones(x.shape[1])


def normalised_factor(stats: GroupStats, scale: str, std_ddof: int, eps: float) -> Float[Tensor, " n"] | None:
    """GRPO's per-group factor: ``centred · factor = (r - mean) / (std + eps)``; None for ``scale="none"``.

    ``scale``: "group" (each group's std), "batch" (one std over every valid reward) or "none" (plain
    mean-centring). The factor is finite even where ``std + eps`` is 0 (there ``centred`` is 0).
    """
    if scale == "none":
        return None
    std = stats.std(std_ddof, eps) if scale == "group" else stats.batch_std(std_ddof, eps).expand_as(stats.count)
    return (std + eps).reciprocal_() if eps > 0 else safe_reciprocal(std)


def normalise(groups: Groups, who: str, *, std_ddof: int = 1, eps: float = 1e-6) -> Float[Tensor, "n g"]:
    """``(r - mean) / (std + eps)`` within each group, over its valid rewards; 0 on invalid completions.

    Exactly GRPO's advantage with ``scale="group"`` and ``singleton="zero"`` (the estimator calls
    this): a group whose valid rewards are all equal, a group of one and an empty group get exactly 0.

    Args:
        groups: the rewards and the mask of the completions that count.
        who: what is normalising, for the DataError raised when a valid reward is not finite.
        std_ddof: 1 for the sample std, 0 for the population std.
        eps: added to the std (not under the square root); a number >= 0 (the caller checks it).
    """
    stats = GroupStats.of(groups, who)
    return stats.output(normalised_factor(stats, "group", std_ddof, eps))
