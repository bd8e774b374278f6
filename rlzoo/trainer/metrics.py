"""A step's metrics: each computed once, reduced across processes, logged to ``metrics.jsonl``.

Reductions across processes, by name: a process's share of the step's loss (normalised by the
global token and sequence counts) and counts add up; times, maxima and minima take the extreme;
everything else is a mean over the processes that report it, NaN (a mean over nothing) left out.
Metrics computed from the gathered step (advantages, trained groups) are the same everywhere.
"""

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path

from torch import Tensor

from rlzoo.errors import DataError
from rlzoo.rewards import Scores
from rlzoo.trainer.distributed import Processes
from rlzoo.trainer.engines import Rollout
from rlzoo.types import Groups

logger = logging.getLogger("rlzoo.trainer")

_SUMMED = ("loss/total", "loss/policy", "loss/kl", "loss/entropy", "reward/invalid", "tokens_per_s")
_SUMMED_SUFFIXES = ("/unscored", "/timeouts", "/errors")
_MAXIMUM = ("length/max", "adv/max", "reward/seconds", "groups/rounds", "rollout/logp_diff_max",
            "correction/ratio_max")
_MINIMUM = ("length/min", "adv/min", "correction/ratio_min")
# Loss metrics that are a micro-batch's share of the step's loss (they add up over micro-batches too).
ADDITIVE = frozenset(_SUMMED[:4])


def reduction(name: str) -> str:
    """How ``name`` combines across processes: ``sum``, ``max``, ``min`` or ``mean``."""
    if name in _SUMMED or name.endswith(_SUMMED_SUFFIXES):
        return "sum"
    if name in _MAXIMUM or name.startswith("time/"):
        return "max"
    return "min" if name in _MINIMUM else "mean"


def reduce_metrics(processes: Processes, metrics: dict[str, float]) -> dict[str, float]:
    """Every process's metrics combined into one dict (every process gets the same result)."""
    if processes.world == 1:
        return metrics
    reports = processes.gather_objects(metrics)
    names = list(dict.fromkeys(k for r in reports for k in r))
    out: dict[str, float] = {}
    for name in names:
        values = [r[name] for r in reports if name in r]
        how = reduction(name)
        if how == "sum":
            out[name] = float(sum(values))
        elif how in ("max", "min"):
            out[name] = float(max(values) if how == "max" else min(values))
        else:
            known = [v for v in values if not math.isnan(v)]
            out[name] = sum(known) / len(known) if known else math.nan
    return out


def all_equal(groups: Groups) -> Tensor:
    """Groups whose valid rewards are all equal (and that have any valid completion)."""
    low = groups.rewards.where(groups.mask, float("inf")).amin(1)
    high = groups.rewards.where(groups.mask, float("-inf")).amax(1)
    return (low == high) & groups.mask.any(1)


def round_metrics(scores: Scores, groups: Groups, rollout: Rollout, live: Tensor) -> dict[str, float]:
    """One generation round: the scorer's reward metrics, and what the trainer adds (shaped rewards,
    lengths, all-equal and kept groups)."""
    lengths = groups.lengths.float()
    shaped = groups.rewards[scores.valid]
    return scores.metrics | {
        "reward/shaped_mean": float(shaped.mean()) if shaped.numel() else math.nan,
        "length/mean": float(lengths.mean()),
        "length/min": float(lengths.min()),
        "length/max": float(lengths.max()),
        "length/truncated_frac": float(rollout.truncated.float().mean()),
        "groups/all_equal_frac": float(all_equal(groups).float().mean()),
        "groups/kept_frac": float(live.float().mean()),
    }


def advantage_metrics(everyone: Groups, advantages: Tensor) -> dict[str, float]:
    """How many groups of the whole step are trained on (after filters), and their advantages' statistics."""
    adv = advantages[everyone.mask]
    m: dict[str, float] = {"groups/trained": float(everyone.mask.any(1).sum())}
    if adv.numel():
        m |= {
            "adv/mean": float(adv.mean()),
            "adv/std": float(adv.std()) if adv.numel() > 1 else 0.0,
            "adv/min": float(adv.min()),
            "adv/max": float(adv.max()),
            "adv/zero_frac": float((adv == 0).float().mean()),
        }
    return m


def mean_over_rounds(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Per-round metrics averaged over the rounds that report them (NaN rounds left out)."""
    out = {}
    for name in dict.fromkeys(k for m in rounds for k in m):
        known = [m[name] for m in rounds if name in m and not math.isnan(m[name])]
        out[name] = sum(known) / len(known) if known else math.nan
    return out


def combine_parts(parts: list[dict[str, float]], add: frozenset[str] = frozenset()) -> dict[str, float]:
    """The metrics of a step's parts (micro-batches, optimiser steps) as one: names in ``add`` add up,
    maxima and minima (by :func:`reduction`) take the extreme of the known values, the rest average
    over the parts that report them (a NaN part makes the mean NaN)."""
    out = {}
    for name in dict.fromkeys(k for m in parts for k in m):
        values = [float(m[name]) for m in parts if name in m]
        how = "sum" if name in add else reduction(name)
        known = [v for v in values if not math.isnan(v)]
        if how in ("max", "min"):
            out[name] = (max(known) if how == "max" else min(known)) if known else math.nan
        else:
            out[name] = sum(values) / (1 if name in add else len(values))
    return out


class EmptySteps:
    """Watches for steps in which no completion was validly scored: a warning each, an error after
    ``limit`` in a row (0: never)."""

    def __init__(self, limit: int, completions_per_step: int, reward_names: list[str]) -> None:
        self.limit, self.per_step, self.names = limit, completions_per_step, reward_names
        self.in_a_row = 0

    def check(self, metrics: dict[str, float], step: int) -> None:
        if metrics.get("reward/invalid", 0.0) < self.per_step:
            self.in_a_row = 0
            return
        self.in_a_row += 1
        what = f"no completion of step {step} was scored by every reward function ({', '.join(self.names)})"
        if self.limit and self.in_a_row >= self.limit:
            raise DataError(
                f"{what}, {self.in_a_row} steps in a row: nothing is being learned. Check the reward functions "
                "(they return None or raise; see the warnings above) and their dataset columns"
            )
        logger.warning("%s: nothing to learn from (%d in a row; the run stops at max_empty_steps=%d)",
                       what, self.in_a_row, self.limit)


class Timer:
    """Wall time per phase of a step."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.phases: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.phases[phase] = self.phases.get(phase, 0.0) + time.perf_counter() - t0

    def metrics(self, tokens: float) -> dict[str, float]:
        total = time.perf_counter() - self.start
        out = {f"time/{k}": v for k, v in self.phases.items()}
        return out | {"time/step": total, "tokens_per_s": tokens / total if total > 0 else 0.0}


class MetricsFile:
    """``metrics.jsonl``: one line per logged step, written by the main process."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, entry: dict[str, float | int]) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")

    def trim(self, step: int) -> None:
        """On resume, drop logged steps after ``step`` (they will be run again) and a line torn by a
        kill during its write."""
        if self.path.exists():
            kept = []
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    logger.warning("%s: dropping a torn line (%r...)", self.path, line[:40])
                    continue
                if entry["step"] <= step:
                    kept.append(line)
            self.path.write_text("".join(ln + "\n" for ln in kept))


def postfix(metrics: dict[str, float]) -> dict[str, str]:
    """The progress bar's short summary of a step."""
    keys = {"reward/mean": "reward", "reward/accuracy": "acc", "length/mean": "len", "loss/total": "loss"}
    return {short: f"{metrics[k]:.3g}" for k, short in keys.items() if k in metrics}
