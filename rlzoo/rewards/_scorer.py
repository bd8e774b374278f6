"""The Scorer: every reward function on every completion of a step, robustly, into ``[n, g]`` tensors."""

import logging
import math
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from rlzoo.errors import ConfigError, DataError, RlzooError
from rlzoo.group_stats import normalise
from rlzoo.rewards import REWARD_FUNCS
from rlzoo.rewards._execution import (
    InProcess,
    Job,
    Outcome,
    ProcessPool,
    RewardFunction,
    default_start_method,
    slice_payload,
)
from rlzoo.rewards._outputs import checked_rewards
from rlzoo.types import Groups

logger = logging.getLogger("rlzoo.rewards")


FunctionSpec = RewardFunction | str | Mapping[str, Any]


class RewardFunctionError(RlzooError, RuntimeError):
    """A reward function raised or timed out on a completion, and the scorer has ``on_error="raise"``."""


@dataclass(frozen=True, eq=False)
class Scores:
    """The scores of one step.

    Args:
        rewards: weighted combination of the functions' rewards; 0 where ``valid`` is False.
        valid: True where every function scored the completion (no None, timeout or error).
        correct: the verdict of the functions with ``verifies_correctness = True`` (all of them
            must give a reward > 0); False where invalid; None when no function verifies.
        per_function: each function's raw (unweighted) reward, 0 where it did not score.
        metrics: the step's reward metrics (floats), the single source of those the trainer logs:

            - ``reward/<fn>/mean``: mean raw reward of function ``<fn>`` over the completions it
              scored (valid or not);
            - ``reward/<fn>/unscored``: completions ``<fn>`` did not score (None, timeout or error);
            - ``reward/<fn>/timeouts``, ``reward/<fn>/errors``: those that timed out or raised;
            - ``reward/mean``: mean of ``rewards`` over the valid completions;
            - ``reward/invalid``: completions not valid;
            - ``reward/accuracy``: the fraction of valid completions that are correct, only when
              ``correct`` is known (some function verifies);
            - ``reward/seconds``: wall-clock seconds the scoring took.

            A mean (or accuracy) over no completions is NaN.
    """

    rewards: Float[Tensor, "n g"]
    valid: Bool[Tensor, "n g"]
    correct: Bool[Tensor, "n g"] | None
    per_function: dict[str, Float[Tensor, "n g"]]
    metrics: dict[str, float]

    def to(self, device: torch.device | str) -> "Scores":
        """The same scores with every tensor on ``device`` (``metrics`` is shared, unchanged)."""
        return Scores(
            self.rewards.to(device),
            self.valid.to(device),
            None if self.correct is None else self.correct.to(device),
            {name: values.to(device) for name, values in self.per_function.items()},
            self.metrics,
        )


def _resolve(spec: FunctionSpec) -> RewardFunction:
    if isinstance(spec, (str, Mapping)):
        return REWARD_FUNCS.build(spec)
    if callable(spec):
        return spec
    raise ConfigError(
        f"Scorer: a reward function must be a callable, a registered name or a {{'name': ...}} spec, "
        f"got {type(spec).__name__}: {spec!r}; registered: {', '.join(REWARD_FUNCS.names())}"
    )


def _default_name(fn: RewardFunction) -> str:
    registered = getattr(type(fn), "component_name", None)
    if registered is not None:
        return registered
    inner = getattr(fn, "func", fn)  # functools.partial
    return getattr(inner, "__name__", type(fn).__name__)


def _unique(names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        candidate, k = name, 1
        while candidate in out:
            k += 1
            candidate = f"{name}_{k}"
        out.append(candidate)
    return out


def _per_completion(what: str, values: Sequence[Any], n: int, g: int) -> list[Any]:
    values = list(values)
    if len(values) == n * g:
        return values
    if len(values) == n:
        return [v for v in values for _ in range(g)]
    raise DataError(
        f"Scorer: {what} has {len(values)} entries; expected one per prompt ({n}) or one per completion ({n * g})"
    )


class Scorer:
    """Scores a step's completions with reward functions written for TRL, robustly.

    ``scorer(prompts, completions, columns, group_size) -> Scores``. Completions are a flat,
    prompt-major list of ``n * g`` (completion ``j`` of prompt ``i`` at ``i * g + j``); prompts and
    each column hold one entry per prompt or one per completion.

    Args:
        funcs: reward functions ``fn(prompts, completions, **columns) -> list[float | None]`` (sync
            or ``async def``; called with keyword arguments, as TRL does), registered names or
            ``{"name": ..., **params}`` specs; a mapping ``{name: function}`` names them for the
            metrics (by default a function's ``__name__`` or registered name, made unique).
        weights: one per function (default 1.0 each).
        timeout: seconds one call of one function may take; past it the call is cut off (its
            worker process killed and replaced). None: no limit, and functions run in this process.
        workers: worker processes running calls in parallel. 0: none when ``timeout`` is None,
            otherwise one (a hard timeout needs a process).
        on_error: what a timeout or an exception becomes: ``"none"`` (the completion is unscored,
            logged on logger ``rlzoo.rewards`` and counted) or ``"raise"`` (RewardFunctionError).
        combine: ``"sum"`` of weighted rewards, or ``"normalize_then_sum"`` (GDPO, arXiv
            2601.05242; TRL's ``multi_objective_aggregation``): each function's rewards are first
            normalised within the group, ``(r - mean) / (std + eps)`` over valid completions.
        chunk_size: completions per call. Default: the whole step in one call per function, split
            evenly over the workers.
        eps: the epsilon of ``normalize_then_sum`` (TRL: 1e-4).
        start_method: how workers start: ``"fork"`` (default where available: functions are
            inherited, so lambdas and closures work) or ``"spawn"``/``"forkserver"`` (functions
            must pickle).
        verifier: the name of the function whose reward > 0 means "correct" (one of the names
            above); None: the functions that declare ``verifies_correctness = True``, if any.

    Implementation details:

    1. A call that raises, crashes its worker or times out on several completions is split in
       halves and each half retried (bisection), so only the completions it really fails on are
       lost: one hanging completion among m costs about log2(m) + 1 timeouts. When both halves
       of a timed-out call time out again the function is taken to hang on everything and the
       rest is left unscored (three timeouts, not one per completion); nothing is retried once
       ``should_stop`` says a stop was asked for. Failures are logged once per function and
       kind, with a count.
    2. A completion is invalid if any function returned None for it or failed on it.
    3. A reward function that raises an rlzoo error (a ConfigError or DataError: a missing column,
       a bad parameter) stops the step: that is a configuration problem, not a completion's.
    4. A NaN or inf reward, a non-number or a wrong-length list is a DataError naming the
       function and the completion: unscorable completions must return None.
    5. ``normalize_then_sum`` uses the sample std (TRL's ``nanstd``) and gives exactly 0 to a
       function whose valid rewards in a group are all equal, or to a group of one.
    6. ``correct`` is ``reward > 0`` of ``verifier``, or of every function with
       ``verifies_correctness = True`` (all must agree) when no verifier is named.
    7. Workers started with ``fork`` set torch to one thread (as torch's DataLoader workers do)
       and must not use CUDA; run GPU reward models with ``timeout=None``. Call :meth:`close` (or
       use ``with``) to stop the workers early; they are daemons and end with the interpreter.
    """

    def __init__(
        self,
        funcs: Sequence[FunctionSpec] | Mapping[str, FunctionSpec],
        weights: Sequence[float | int] | None = None,
        timeout: float | int | None = 30.0,
        workers: int = 0,
        on_error: Literal["none", "raise"] = "none",
        combine: Literal["sum", "normalize_then_sum"] = "sum",
        *,
        chunk_size: int | None = None,
        eps: float = 1e-4,
        start_method: Literal["fork", "spawn", "forkserver"] | None = None,
        verifier: str | None = None,
    ) -> None:
        if isinstance(funcs, Mapping):
            names, specs = list(funcs), list(funcs.values())
        else:
            specs = list(funcs)
            names = None
        if not specs:
            raise ConfigError("Scorer: needs at least one reward function")
        self.funcs = [_resolve(spec) for spec in specs]
        self.names = names if names is not None else _unique([_default_name(fn) for fn in self.funcs])
        weights = [1.0] * len(self.funcs) if weights is None else [float(w) for w in weights]
        if len(weights) != len(self.funcs) or not all(math.isfinite(w) for w in weights):
            raise ConfigError(
                f"Scorer: weights={weights!r} must be {len(self.funcs)} finite numbers, one per function "
                f"({', '.join(self.names)})"
            )
        problems = [
            f"{param}={value!r} {requirement}"
            for param, value, ok, requirement in (
                ("timeout", timeout, timeout is None or timeout > 0, "must be > 0 or None"),
                ("workers", workers, workers >= 0, "must be >= 0"),
                ("on_error", on_error, on_error in ("none", "raise"), "must be 'none' or 'raise'"),
                (
                    "combine",
                    combine,
                    combine in ("sum", "normalize_then_sum"),
                    "must be 'sum' or 'normalize_then_sum'",
                ),
                ("chunk_size", chunk_size, chunk_size is None or chunk_size >= 1, "must be >= 1 or None"),
                ("eps", eps, eps >= 0 and eps == eps, "must be a number >= 0"),
            )
            if not ok
        ]
        if verifier is not None and verifier not in self.names:
            problems.append(f"verifier={verifier!r} is not one of the reward functions ({', '.join(self.names)})")
        if problems:
            raise ConfigError("Scorer: " + "; ".join(problems))
        self.should_stop: Callable[[], bool] | None = None  # set by the trainer: a stop was requested
        self.verifiers = (
            [self.names.index(verifier)]
            if verifier is not None
            else [f for f, fn in enumerate(self.funcs) if getattr(fn, "verifies_correctness", False)]
        )
        self.weights = weights
        self.timeout = timeout
        self.workers = workers
        self.on_error = on_error
        self.combine = combine
        self.chunk_size = chunk_size
        self.eps = eps
        if timeout is None and workers == 0:
            self._executor: InProcess | ProcessPool = InProcess(self.funcs)
        else:
            self._executor = ProcessPool(self.funcs, max(1, workers), start_method or default_start_method())
        self._finalizer = weakref.finalize(self, self._executor.close)

    def __repr__(self) -> str:
        return (
            f"Scorer({dict(zip(self.names, self.weights, strict=True))}, timeout={self.timeout}, workers={self.workers}, "
            f"on_error={self.on_error!r}, combine={self.combine!r})"
        )

    def close(self) -> None:
        """Stop the worker processes (a later call starts new ones)."""
        self._executor.close()

    def __enter__(self) -> "Scorer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scoring ---------------------------------------------------------------------------------

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        columns: Mapping[str, Sequence[Any]],
        group_size: int,
        context: Mapping[str, Any] | None = None,
    ) -> Scores:
        """Score ``completions``; ``context`` holds keyword arguments handed unchanged to every call
        (TRL's ``trainer_state``, ``log_extra``, ``log_metric``), where ``columns`` are sliced per call."""
        started = time.perf_counter()
        total, g = len(completions), group_size
        if g < 1 or total % g:
            raise DataError(f"Scorer: {total} completions do not split into groups of group_size={g}")
        n = total // g
        context = dict(context or {})
        clash = {"prompts", "completions"} & (set(columns) | set(context))
        if clash:
            raise DataError(
                f"Scorer: columns may not be named {sorted(clash)}: those are the positional inputs"
            )
        prompts = _per_completion("prompts", prompts, n, g)
        columns = {key: _per_completion(f"column '{key}'", values, n, g) for key, values in columns.items()}
        values, timeouts, errors = self._evaluate(prompts, list(completions), columns, g, context)

        # Host-side by design: rewards come from Python; the trainer moves the Scores to its device once.
        shape, cpu = (len(self.funcs), n, g), torch.device("cpu")
        scored = torch.tensor([[v is not None for v in row] for row in values], dtype=torch.bool, device=cpu)
        scored = scored.view(shape)
        raw = torch.tensor([[0.0 if v is None else v for v in row] for row in values], dtype=torch.float64, device=cpu)
        raw = raw.view(shape)
        valid = scored.all(0)
        parts = raw if self.combine == "sum" else self._normalise(raw, valid)
        weights = torch.tensor(self.weights, dtype=torch.float64, device=cpu).view(-1, 1, 1)
        rewards = torch.where(valid, (weights * parts).sum(0), 0.0).float()
        correct = (raw[self.verifiers] > 0).all(0) & valid if self.verifiers else None

        metrics: dict[str, float] = {}
        for f, name in enumerate(self.names):
            count = int(scored[f].sum())
            metrics[f"reward/{name}/mean"] = float(raw[f][scored[f]].mean()) if count else math.nan
            metrics[f"reward/{name}/unscored"] = float(total - count)
            metrics[f"reward/{name}/timeouts"] = float(timeouts[f])
            metrics[f"reward/{name}/errors"] = float(errors[f])
        num_valid = int(valid.sum())
        metrics["reward/mean"] = float(rewards[valid].mean()) if num_valid else math.nan
        metrics["reward/invalid"] = float(total - num_valid)
        if correct is not None:
            metrics["reward/accuracy"] = float(correct.sum()) / num_valid if num_valid else math.nan
        metrics["reward/seconds"] = time.perf_counter() - started
        per_function = {name: raw[f].float() for f, name in enumerate(self.names)}
        return Scores(rewards, valid, correct, per_function, metrics)

    def _normalise(self, raw: Tensor, valid: Tensor) -> Tensor:
        """Each function's rewards normalised within the group: GRPO's advantage, one row per function."""
        num_funcs, n, g = raw.shape
        groups = Groups(
            raw.reshape(num_funcs * n, g).float(),
            torch.zeros(num_funcs * n, g, dtype=torch.long),
            mask=valid.repeat(num_funcs, 1),
        )
        return normalise(groups, "Scorer (combine='normalize_then_sum')", eps=self.eps).view(num_funcs, n, g).double()

    def _evaluate(
        self, prompts: list[Any], completions: list[Any], columns: dict[str, list[Any]], g: int,
        context: dict[str, Any],
    ) -> tuple[list[list[float | None]], list[int], list[int]]:
        total = len(completions)
        size = self.chunk_size or max(1, -(-total // max(1, self.workers)))
        jobs = [
            Job(f, tuple(range(start, min(start + size, total))))
            for f in range(len(self.funcs))
            for start in range(0, total, size)
        ]
        values: list[list[float | None]] = [[None] * total for _ in self.funcs]
        failed: list[tuple[int, int, Outcome]] = []  # (function, completion, outcome)
        groups: list[list[Job]] = [[job] for job in jobs]  # a failed call's two halves form a group
        while groups:
            jobs = [job for group in groups for job in group]
            outcomes = iter(self._run(jobs, prompts, completions, columns, context))
            retry: list[list[Job]] = []
            for group in groups:
                results = [(job, next(outcomes)) for job in group]
                # both halves of a timed-out call timing out again: the function hangs on everything
                hopeless = len(group) == 2 and all(o.status == "timeout" for _, o in results)
                for job, outcome in results:
                    if outcome.status == "ok":
                        for i, value in zip(job.indices, checked_rewards(self.names[job.func], job.indices, outcome.value, g), strict=True):
                            values[job.func][i] = value
                    elif len(job.indices) > 1 and not hopeless and not self._stopping():
                        half = len(job.indices) // 2  # bisect: one bad completion costs log2(size) calls
                        retry.append([Job(job.func, job.indices[:half]), Job(job.func, job.indices[half:])])
                    else:
                        failed += [(job.func, i, outcome) for i in job.indices]
            groups = retry
        return values, *self._report(failed, g)

    def _stopping(self) -> bool:
        return self.should_stop is not None and self.should_stop()

    def _report(self, failed: list[tuple[int, int, Outcome]], g: int) -> tuple[list[int], list[int]]:
        """Count the unscored completions per function; one log line per function and kind of failure."""
        timeouts, errors = [0] * len(self.funcs), [0] * len(self.funcs)
        summary: dict[tuple[int, str, str], list[int]] = {}  # (function, verb, detail) -> completions
        for func, index, outcome in sorted(failed, key=lambda item: (item[1], item[0])):
            if outcome.status == "timeout":
                kind = (func, f"timed out after {self.timeout:g} s", "")
                timeouts[func] += 1
            else:
                kind = (func, "raised", f": {outcome.value}")
                errors[func] += 1
            summary.setdefault(kind, []).append(index)
        for (func, verb, detail), indices in summary.items():
            first = indices[0]
            more = f" and {len(indices) - 1} more" if len(indices) > 1 else ""
            what = f"reward function '{self.names[func]}' {verb} on completion {first} (prompt {first // g}, sample {first % g}){more}{detail}"
            if self.on_error == "raise":
                raise RewardFunctionError(what)
            logger.warning("%s; left unscored", what)
        return timeouts, errors

    def _run(
        self, jobs: list[Job], prompts: list[Any], completions: list[Any], columns: dict[str, list[Any]],
        context: dict[str, Any],
    ) -> list[Outcome]:
        if not jobs:
            return []
        payloads = [slice_payload(job.func, job.indices, prompts, completions, columns, context) for job in jobs]
        outcomes = self._executor.run(jobs, payloads, self.timeout)
        for outcome in outcomes:
            if outcome.status == "fatal":
                raise outcome.value
        return outcomes
