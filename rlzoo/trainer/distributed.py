"""The processes of a run, seen from one of them: gathers of ragged rows, reductions, the shared stop flag.

Every collective here is joined by every process, whatever it holds (possibly nothing): a process
that skips one while the others enter it hangs the run. Tensors travel on ``accelerator.device``
(NCCL refuses CPU tensors); booleans travel as bytes (gloo has no boolean all-gather).
"""

import atexit
import contextlib
import functools
import logging
import math
import signal
from collections.abc import Iterator
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch import Tensor

from rlzoo.types import Groups

logger = logging.getLogger("rlzoo.trainer")


@functools.cache
def _end_process_group_at_exit() -> None:
    """Destroy the process group when the interpreter exits (once): a gloo group left alive aborts the
    process at exit ("terminate called without an active exception"), an NCCL one warns. Not at the
    end of ``train``: evaluation, saving or another run may follow in the same process."""

    def end() -> None:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    atexit.register(end)


class Processes:
    """This process's view of the run: its rank, the world size and the collectives the trainer uses."""

    def __init__(self, accelerator: Accelerator) -> None:
        self.accelerator = accelerator
        self.world = accelerator.num_processes
        self.rank = accelerator.process_index
        self.device = accelerator.device
        self.is_main = accelerator.is_main_process
        if self.world > 1:
            _end_process_group_at_exit()

    def counts(self, value: int) -> list[int]:
        """``value`` of every process, in rank order."""
        if self.world == 1:
            return [value]
        t = torch.tensor([value], device=self.device)
        return [int(x) for x in self.accelerator.gather(t)]

    def all(self, flag: bool) -> bool:
        return all(self.counts(int(flag)))

    def any(self, flag: bool) -> bool:
        return any(self.counts(int(flag)))

    def sum(self, t: Tensor) -> Tensor:
        return t if self.world == 1 else self.accelerator.reduce(t, "sum")

    def gather_rows(self, tensors: list[Tensor], n_local: int) -> tuple[list[Tensor], int]:
        """All-gather ``[n, ...]`` tensors whose ``n`` differs per process; also where this process's rows start.

        One all-gather per dtype: the tensors of a dtype travel side by side as the columns of one
        ``[n, ...]`` block (booleans as bytes), plus one for the row counts.
        """
        if self.world == 1:
            return tensors, 0
        counts = self.counts(n_local)
        width = max(counts)
        rows = torch.cat([torch.arange(c, device=self.device) + i * width for i, c in enumerate(counts)])
        wires = [x.to(torch.uint8) if x.dtype == torch.bool else x for x in tensors]
        out: list[Tensor | None] = [None] * len(tensors)
        for dtype in dict.fromkeys(w.dtype for w in wires):
            same = [i for i, w in enumerate(wires) if w.dtype == dtype]
            columns = [wires[i].reshape(n_local, math.prod(wires[i].shape[1:])) for i in same]
            block = columns[0].new_zeros((width, sum(c.shape[1] for c in columns)))
            block[:n_local] = torch.cat(columns, 1)
            gathered = self.accelerator.gather(block)[rows]
            for i, part in zip(same, gathered.split([c.shape[1] for c in columns], 1), strict=True):
                out[i] = part.reshape(part.shape[0], *tensors[i].shape[1:]).to(tensors[i].dtype)
        return out, sum(counts[: self.rank])  # type: ignore[return-value]

    def sum_gradients(self, params: list[torch.nn.Parameter], bucket_elements: int = 2**24) -> None:
        """Sum every process's gradients of ``params`` in place, in flat buckets of at most
        ``bucket_elements`` (one all-reduce each, per dtype); a missing gradient counts as zeros."""
        if self.world == 1:
            return
        buckets: list[list[torch.nn.Parameter]] = []
        size = 0
        for p in params:
            if buckets and buckets[-1][0].dtype == p.dtype and size + p.numel() <= bucket_elements:
                buckets[-1].append(p)
                size += p.numel()
            else:
                buckets.append([p])
                size = p.numel()
        for bucket in buckets:
            flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in bucket])
            flat = self.sum(flat)
            for p, g in zip(bucket, flat.split([p.numel() for p in bucket]), strict=True):
                p.grad = g.view_as(p)

    def gather_groups(self, groups: Groups, keep: list[Tensor]) -> tuple[Groups, list[Tensor], int]:
        """Every process's groups (and filter keep masks), whole, in rank order; where this process's start."""
        optional = [t for t in (groups.correct, groups.greedy_rewards) if t is not None]
        gathered, offset = self.gather_rows([groups.rewards, groups.lengths, groups.mask, *optional, *keep], groups.n)
        rewards, lengths, mask, *rest = gathered
        correct = None if groups.correct is None else rest.pop(0)
        greedy = None if groups.greedy_rewards is None else rest.pop(0)
        return Groups(rewards, lengths, mask=mask, correct=correct, greedy_rewards=greedy), rest, offset

    def gather_objects(self, value: Any) -> list[Any]:
        """One picklable value from every process, in rank order."""
        return [value] if self.world == 1 else gather_object([value])

    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()


class StopFlag:
    """SIGINT/SIGTERM to any process stops every process at the same step boundary.

    The handler only records the signal; :meth:`agreed` reduces the flags of all processes once per
    step, so all of them leave the loop after the same step, save it together and exit cleanly. A
    second SIGINT to a process aborts it at once (KeyboardInterrupt).
    """

    def __init__(self, processes: Processes) -> None:
        self.processes = processes
        self.signal: int | None = None

    def agreed(self) -> bool:
        """Whether any process was signalled (a collective: every process calls it once per step)."""
        return self.processes.any(self.signal is not None)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        def handler(signum: int, frame: Any) -> None:
            if self.signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.signal = signum
            logger.warning("signal %d: finishing this step, then saving a checkpoint (Ctrl-C again aborts)", signum)

        try:
            previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: leave signals alone
            yield
            return
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
