"""Running reward functions: in this process, or in reusable worker processes with hard timeouts.

A thread cannot be stopped, so a hard timeout needs a process. A worker process is started once
(``fork`` by default: it inherits the functions, so lambdas and closures work, and starts in tens of
milliseconds), serves jobs over a pipe until the scorer is closed, and is killed and replaced only
when one of its jobs runs past the timeout or it dies. Both executors take the same jobs and return
the same outcomes, so the scorer's logic does not depend on where a function runs.
"""

import asyncio
import concurrent.futures
import faulthandler
import inspect
import math
import multiprocessing
import multiprocessing.connection
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rlzoo.errors import ConfigError, RlzooError

RewardFunction = Callable[..., Any]


@dataclass(frozen=True)
class Job:
    """One call of reward function number ``func`` on the completions at ``indices``."""

    func: int
    indices: tuple[int, ...]


@dataclass(frozen=True)
class Outcome:
    """What one job gave: ``ok`` (``value`` is the function's output as a list), ``error`` (``value``
    describes the exception), ``timeout``, or ``fatal`` (``value`` is an RlzooError to re-raise: a
    configuration or contract problem, not a per-completion failure)."""

    status: Literal["ok", "error", "timeout", "fatal"]
    value: Any = None


Payload = tuple[int, list[Any], list[Any], dict[str, list[Any]]]


def _run_awaitable(awaitable: Any) -> Any:
    async def wait() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    # An event loop already runs in this thread (a notebook): run ours in a helper thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, wait()).result()


def _as_list(values: Any) -> Any:
    """Lists, tuples, numpy arrays and tensors become a list; anything else is returned as it is."""
    if isinstance(values, (list, tuple)):
        return list(values)
    if hasattr(values, "tolist") and getattr(values, "ndim", None) == 1:
        return values.tolist()
    return values


def call_reward_function(fn: RewardFunction, payload: Payload) -> Outcome:
    """Call ``fn`` with TRL's keyword contract; awaitables (``async def``) are run to completion."""
    _, prompts, completions, columns = payload
    try:
        out = fn(prompts=prompts, completions=completions, **columns)
        if inspect.isawaitable(out):
            out = _run_awaitable(out)
        return Outcome("ok", _as_list(out))
    except RlzooError as exc:
        return Outcome("fatal", exc)
    except Exception as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        return Outcome(
            "error", f"{type(exc).__name__}: {exc} (at {frame.filename}:{frame.lineno}, in {frame.name})"
        )


class InProcess:
    """Runs each job here, one after the other; no timeouts."""

    def __init__(self, funcs: Sequence[RewardFunction]) -> None:
        self.funcs = funcs

    def run(self, jobs: Sequence[Job], payloads: Sequence[Payload], timeout: float | None) -> list[Outcome]:
        return [
            call_reward_function(self.funcs[job.func], payload)
            for job, payload in zip(jobs, payloads, strict=True)
        ]

    def close(self) -> None:
        pass


def _serve(conn: Any, funcs: Sequence[RewardFunction], inherited: Sequence[Any]) -> None:
    """A worker's loop: say it is ready, then receive a payload, call, send the outcome; exit on EOF."""
    for other in inherited:  # the parent's ends of every pipe (fork): so EOF reaches us if it dies
        other.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    # A forked worker inherits the trainer's SIGTERM handler (finish the step, then save), which would
    # keep it alive when its parent's exit terminates it, and the parent would wait for it forever.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    faulthandler.disable()  # a crash is reported by the parent (signal named); a forked dump shows its stack
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)  # as torch's DataLoader workers: a forked OpenMP pool can hang
    conn.send("ready")  # the parent starts a job's clock only now (spawn takes seconds to import)
    while True:
        try:
            payload = conn.recv()
        except (EOFError, OSError):
            return
        outcome = call_reward_function(funcs[payload[0]], payload)
        try:
            conn.send(outcome)
        except Exception as exc:  # an unpicklable return value or exception
            conn.send(Outcome("error", f"its result could not be sent back from the worker process: {exc!r}"))


class _Worker:
    def __init__(self, ctx: Any, funcs: Sequence[RewardFunction], siblings: Sequence[Any]) -> None:
        here, there = ctx.Pipe()
        method = ctx.get_start_method()
        inherited = [here, *siblings] if method == "fork" else []
        self.process = ctx.Process(
            target=_serve, args=(there, funcs, inherited), daemon=True, name="rlzoo-reward-worker"
        )
        try:
            self.process.start()
        except Exception as exc:  # spawn/forkserver pickle the functions
            raise ConfigError(
                f"Scorer: could not start a reward worker process with start_method='{method}': {exc!r}; "
                "the reward functions must pickle (module-level functions, not lambdas or closures), "
                "or use start_method='fork'"
            ) from exc
        there.close()
        self.conn = here
        self.calls = 0  # jobs served

    def wait_ready(self) -> None:
        try:
            self.conn.recv()
        except (EOFError, OSError) as exc:
            self.kill()
            raise ConfigError(
                f"Scorer: a reward worker process {self.death()} while starting; "
                "with start_method='spawn' or 'forkserver' the reward functions must be importable"
            ) from exc

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()

    def death(self) -> str:
        """How the worker process ended, as the OS reports it."""
        self.process.join(timeout=5)  # EOF can arrive before the exit status
        code = self.process.exitcode
        if code is None:
            return "closed its pipe but did not exit"
        if code < 0:
            try:
                return f"was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with code {code}"


class ProcessPool:
    """``size`` reusable worker processes; a job past ``timeout`` gets its worker killed and replaced,
    and so does a worker whose job raised (its state may be broken), one that died, and one that has
    served ``max_calls`` jobs (a function that leaks memory cannot grow a worker without bound).

    Workers start on first use and live until :meth:`close` (or until the pool is garbage collected
    or the interpreter exits: they are daemons). When no job hangs nothing is restarted, so a step
    costs one pipe round trip per job (~0.1 ms) plus the functions' own time. A job's clock starts
    when its worker is ready, so a slow start (``spawn`` imports the functions' modules) is not
    counted against the timeout.
    """

    def __init__(self, funcs: Sequence[RewardFunction], size: int, start_method: str, max_calls: int = 100) -> None:
        self.funcs = funcs
        self.size = size
        self.max_calls = max_calls
        self.ctx = multiprocessing.get_context(start_method)
        self.workers: list[_Worker] = []

    def _start(self, count: int) -> list[_Worker]:
        new = []
        for _ in range(count):
            new.append(_Worker(self.ctx, self.funcs, [w.conn for w in self.workers + new]))
        self.workers += new
        for worker in new:
            worker.wait_ready()
        return new

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        self.workers.remove(worker)
        return self._start(1)[0]

    def run(self, jobs: Sequence[Job], payloads: Sequence[Payload], timeout: float | None) -> list[Outcome]:
        self._start(min(self.size, len(jobs)) - len(self.workers))
        outcomes: list[Outcome | None] = [None] * len(jobs)
        queue = deque(range(len(jobs)))
        idle = list(self.workers)
        busy: dict[Any, tuple[_Worker, int, float]] = {}  # conn -> (worker, job, deadline)
        while queue or busy:
            while queue and idle:
                worker, j = idle.pop(), queue.popleft()
                if not worker.process.is_alive():
                    worker = self._replace(worker)
                worker.conn.send(payloads[j])
                deadline = time.monotonic() + timeout if timeout is not None else math.inf
                busy[worker.conn] = (worker, j, deadline)
            wait = min(d for _, _, d in busy.values()) - time.monotonic()
            ready = multiprocessing.connection.wait(
                list(busy), timeout=None if wait == math.inf else max(wait, 0)
            )
            for conn in ready:
                worker, j, _ = busy.pop(conn)
                try:
                    outcomes[j] = conn.recv()
                except (EOFError, OSError):
                    outcomes[j] = Outcome("error", f"its worker process {worker.death()} (a crash, os._exit or OOM)")
                    idle.append(self._replace(worker))
                    continue
                worker.calls += 1
                fresh = outcomes[j].status == "error" or worker.calls >= self.max_calls
                idle.append(self._replace(worker) if fresh else worker)
            now = time.monotonic()
            for conn, (worker, j, deadline) in list(busy.items()):
                if deadline <= now:
                    del busy[conn]
                    outcomes[j] = Outcome("timeout")
                    idle.append(self._replace(worker))
        return outcomes  # type: ignore[return-value]

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.workers.clear()


def default_start_method() -> str:
    """``fork`` where the platform has it (no pickling of the functions; fast start), else ``spawn``."""
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def slice_payload(
    func: int,
    indices: Sequence[int],
    prompts: Sequence[Any],
    completions: Sequence[Any],
    columns: Mapping[str, Sequence[Any]],
    context: Mapping[str, Any],
) -> Payload:
    """One call's arguments: the per-completion values at ``indices``, and ``context`` as it is."""
    return (
        func,
        [prompts[i] for i in indices],
        [completions[i] for i in indices],
        {**{key: [values[i] for i in indices] for key, values in columns.items()}, **context},
    )
