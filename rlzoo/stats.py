"""Paired comparisons over seeds: the per-seed difference to a baseline, its mean and a bootstrap interval.

Runs of two recipes with the same seed share the model, the data order and the evaluation prompts,
so the comparison is pairwise: ``d[s] = x_recipe[s] - x_baseline[s]`` for every seed ``s`` both
have, summarised by its mean and a percentile bootstrap interval over the seeds.

Implementation details:

1. Paired bootstrap: ``resamples`` draws of ``n`` seeds with replacement (the same index for the
   recipe and the baseline, which is what resampling the differences does), the mean of each draw,
   and the interval's ends are the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of those
   means by the inverted empirical CDF (the smallest value whose share of draws at or below it
   reaches the level; numpy's ``method="inverted_cdf"``).
2. The draws come from a ``torch.Generator`` seeded with ``seed`` (default 0): the same values give
   the same interval on every run and machine.
3. Fewer than 2 seeds: no interval (``None``, printed "n/a"). Differences that are all equal give
   the exact interval ``[d, d]`` (no float noise from summing a resample), so identical recipes
   give exactly 0 with the interval ``[0, 0]``.
4. With few seeds the percentile bootstrap is narrow: its spread is the plug-in standard error
   ``sd · sqrt((n - 1) / n) / sqrt(n)`` and it ignores the t quantile (2.78 at n = 5 against 1.96),
   so read an interval that only just excludes 0 with care; :class:`PairedDifference` keeps every
   per-seed difference and their ``sd`` so another interval can be computed from the JSON.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from rlzoo.errors import ConfigError

__all__ = ["PairedDifference", "bootstrap_interval", "paired_difference"]

RESAMPLES = 10_000
LEVEL = 0.95


def _quantile_index(q: float, count: int) -> int:
    """Index into ``count`` sorted values of the inverted-CDF ``q`` quantile (q * count rounded to 1e-9
    first, so 0.025 * 10_000 is 250, not 250.00000000000003)."""
    return min(count - 1, max(0, math.ceil(round(q * count, 9)) - 1))


def bootstrap_interval(
    values: Sequence[float], *, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of ``values`` (None for fewer than two values)."""
    if not 0 < level < 1 or resamples < 1:
        raise ConfigError(f"bootstrap_interval: need 0 < level < 1 and resamples >= 1, got {level}, {resamples}")
    n = len(values)
    if n < 2:
        return None
    if any(math.isnan(v) for v in values):
        return (math.nan, math.nan)
    if all(v == values[0] for v in values):
        return (float(values[0]), float(values[0]))
    data = torch.tensor(list(values), dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(n, (resamples, n), generator=generator)
    means = data[draws].mean(1).sort().values
    tail = (1 - level) / 2
    return float(means[_quantile_index(tail, resamples)]), float(means[_quantile_index(1 - tail, resamples)])


@dataclass(frozen=True)
class PairedDifference:
    """The per-seed differences ``recipe - baseline`` of one metric and their summary."""

    seeds: tuple[int, ...]
    diffs: tuple[float, ...]
    mean: float
    sd: float  # sample standard deviation of the differences (0 with one seed)
    interval: tuple[float, float] | None  # None with fewer than two seeds
    level: float = LEVEL

    @property
    def excludes_zero(self) -> bool | None:
        """Whether the interval lies wholly above or below 0 (None without an interval)."""
        if self.interval is None or any(math.isnan(x) for x in self.interval):
            return None
        lo, hi = self.interval
        return lo > 0 or hi < 0

    def to_dict(self) -> dict[str, object]:
        return {"seeds": list(self.seeds), "diffs": list(self.diffs), "mean": self.mean, "sd": self.sd,
                "interval": None if self.interval is None else list(self.interval), "level": self.level,
                "excludes_zero": self.excludes_zero}


def paired_difference(
    recipe: Mapping[int, float],
    baseline: Mapping[int, float],
    *,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> PairedDifference:
    """Pair ``recipe`` and ``baseline`` (seed -> value) on the seeds both have; mean and bootstrap interval."""
    seeds = tuple(sorted(set(recipe) & set(baseline)))
    if not seeds:
        raise ConfigError("paired_difference: the recipe and the baseline share no seed")
    diffs = tuple(float(recipe[s]) - float(baseline[s]) for s in seeds)
    data = torch.tensor(diffs, dtype=torch.float64)
    sd = float(data.std()) if len(diffs) > 1 else 0.0
    mean = diffs[0] if all(d == diffs[0] for d in diffs) else float(data.mean())
    return PairedDifference(seeds, diffs, mean, sd,
                            bootstrap_interval(diffs, level=level, resamples=resamples, seed=seed), level)
