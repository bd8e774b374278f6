"""Optimiser steps on a step's batch: ``passes`` x ``mini_batches`` of them, with global normalisers.

The loss of every micro-batch is normalised by the token and sequence counts of the whole
optimiser step across every process (the objective's totals, all-reduced), so the gradient does
not depend on how the batch is split into micro-batches or processes. Each process accumulates its
share of the gradient locally and the shares are summed across processes once per optimiser step
(one all-reduce of the flattened gradients). Not DDP: its forward and backward hold collectives
that pair up only when every process runs the same number of micro-batches, and here a process
may have fewer, or none (its groups were filtered out). Under FSDP2 (rlzoo.trainer.sharding) the
forwards all-gather too, so a process with fewer micro-batches runs zero-weight ones up to the
step's most, and the reduce-scatter sums the shares instead of the all-reduce.
"""

import dataclasses
import math
from typing import Any

import torch
from accelerate import Accelerator
from torch import Tensor

from rlzoo.errors import DataError
from rlzoo.trainer import sharding
from rlzoo.trainer.batching import StepBatch, micro_batches, mini_batches
from rlzoo.trainer.config import TrainConfig
from rlzoo.trainer.distributed import Processes
from rlzoo.trainer.forward import LogProbs
from rlzoo.trainer.metrics import ADDITIVE, combine_parts
from rlzoo.types import LossTotals, PolicyBatch


class NonFiniteUpdate(DataError):
    """An optimiser step whose loss or gradient norm is NaN or infinite (``on_nonfinite="raise"``)."""


def lr_factor(config: TrainConfig, step: int) -> float:
    """The learning-rate multiplier at ``step``: linear warm-up, then constant, linear or cosine decay."""
    if step < config.warmup_steps:
        return (step + 1) / (config.warmup_steps + 1)
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    if config.lr_schedule == "linear":
        return max(0.0, 1.0 - progress)
    if config.lr_schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


class Updater:
    """Runs the objective over a StepBatch and steps the optimiser; every process joins every collective."""

    def __init__(
        self,
        *,
        accelerator: Accelerator,
        processes: Processes,
        model: torch.nn.Module,
        logprobs: LogProbs,
        optimizer: torch.optim.Optimizer,
        objective: Any,
        config: TrainConfig,
    ) -> None:
        self.accelerator, self.processes, self.model, self.logprobs = accelerator, processes, model, logprobs
        self.optimizer, self.objective, self.config = optimizer, objective, config
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.sharded = sharding.is_sharded(model)
        self.touched = False

    def start_step(self, step: int) -> float:
        """Before a step: nothing has touched the weights yet; the learning rate of ``step`` (the schedule
        is a function of the step: nothing to save)."""
        self.touched = False
        lr = self.config.learning_rate * lr_factor(self.config, step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _chunks(self, batch: StepBatch, rows: Tensor) -> list[Tensor]:
        return micro_batches(batch, rows, self.config.micro_batch_size, self.objective.needs_whole_groups)

    def __call__(self, batch: StepBatch) -> dict[str, float]:
        """``passes`` x ``mini_batches`` optimiser steps; ``touched`` says whether one has changed the weights."""
        cfg, temperature = self.config, self.config.temperature
        if self.processes.all(batch.size == 0):
            return {"update/skipped": 1.0}  # every group was filtered out: a logged no-op
        everything = self._chunks(batch, batch.rows())
        old_logp = ref_logp = None
        if cfg.passes > 1 or cfg.mini_batches > 1:  # later optimiser steps are off-policy
            old_logp = self.logprobs.detached(batch, everything, temperature)
        if self.objective.needs_ref_logp:
            ref_logp = self.logprobs.detached(batch, everything, temperature, reference=True)
        # Each mini-batch's micro-batches, cut once for every pass; the one mini-batch of the default is
        # the whole batch, whose emptiness everywhere was just asked.
        if cfg.mini_batches == 1:
            plan = [(batch.rows(), everything)]
        else:
            plan = [(rows, self._chunks(batch, rows)) for rows in mini_batches(batch, cfg.mini_batches)
                    if not self.processes.all(rows.numel() == 0)]
        reports = [self._step(batch, rows, chunks, old_logp, ref_logp) for _ in range(cfg.passes) for rows, chunks in plan]
        return combine_parts(reports) | {"update/skipped": 0.0, "update/optimizer_steps": float(len(reports))}

    def _step(
        self, batch: StepBatch, rows: Tensor, chunks: list[Tensor], old_logp: Tensor | None, ref_logp: Tensor | None
    ) -> dict[str, float]:
        """One optimiser step on ``rows``, cut into ``chunks`` (possibly none here, while other processes train)."""
        objective, acc = self.objective, self.accelerator
        k, t = self.config.prompts_per_step, batch.completion_len
        # The step's normalisers, counted once over all its rows (counts add up, exactly, whatever the
        # micro-batches), summed over the processes in one all-reduce.
        counted = self._policy_batch(batch, rows, batch.completion_mask.new_zeros((rows.numel(), t), dtype=torch.float32))
        totals = self._summed(objective.totals(counted, k))
        threshold = self._entropy_threshold(batch, rows, chunks, counted) if objective.needs_entropy_threshold else None
        # FSDP2 all-gathers in every forward: each process runs the step's most micro-batches, some idle
        idle = max(self.processes.counts(len(chunks))) - len(chunks) if self.sharded else 0
        parts: list[dict[str, float]] = []
        shared = self.logprobs.prompts(batch, rows)  # each distinct prompt run once, where it is
        for c in chunks:
            part = batch.select(c).trimmed()  # the policy's log-probs [b, w], w = its longest completion
            prompts = None if shared is None else shared.select(c)
            logp, entropy = self.logprobs.policy(part, self.config.temperature, objective.needs_entropy, prompts)
            w = part.completion_len
            mb = self._policy_batch(
                batch, c, logp,
                old_logp=None if old_logp is None else old_logp[c, :w],
                ref_logp=None if ref_logp is None else ref_logp[c, :w],
                rollout_logp=part.rollout_logp,
                entropy=entropy,
                totals=totals,
                entropy_threshold=threshold,
            )
            out = objective(mb)
            acc.backward(out.loss)
            parts.append({name: float(value) for name, value in {"loss/total": out.loss.detach(), **out.metrics}.items()})
        if shared is not None:  # the prompts' share of the gradient, summed over the micro-batches
            shared.backward()
        sums = combine_parts(parts, ADDITIVE)  # loss shares add up, extremes kept, the rest averaged
        for _ in range(idle):
            acc.backward(sharding.idle_loss(self.logprobs, self.processes.device))
        if not self.sharded:  # under FSDP2 the reduce-scatter summed them
            self.processes.sum_gradients(self.params)
        limit = self.config.max_grad_norm
        norm = float(acc.clip_grad_norm_(self.params, float("inf") if limit is None else limit))
        sums["grad_norm"] = norm
        loss = sums.get("loss/total", 0.0)
        if self.processes.any(not (math.isfinite(norm) and math.isfinite(loss))):  # every process decides alike
            self.optimizer.zero_grad(set_to_none=True)
            if self.config.on_nonfinite == "raise":
                raise NonFiniteUpdate(
                    f"the {'loss' if not math.isfinite(loss) else 'gradient norm'} is "
                    f"{loss if not math.isfinite(loss) else norm} (loss {loss}, gradient norm {norm}); the weights "
                    "were not updated. Lower learning_rate or set on_nonfinite='skip' to skip such steps"
                )
            return {"update/nonfinite_skipped": 1.0}
        self.optimizer.step()
        self.touched = True
        self.optimizer.zero_grad(set_to_none=True)
        return sums | {"update/nonfinite_skipped": 0.0}

    def _summed(self, totals: LossTotals) -> LossTotals:
        """``totals`` summed over the processes, every field in one all-reduce."""
        if self.processes.world == 1:
            return totals
        values = [getattr(totals, f.name) for f in dataclasses.fields(totals)]
        flat = self.processes.sum(torch.cat([v.reshape(-1) for v in values]))
        parts = flat.split([v.numel() for v in values])
        return LossTotals(*(part.view_as(v) for part, v in zip(parts, values, strict=True)))

    @torch.no_grad()
    def _entropy_threshold(self, batch: StepBatch, rows: Tensor, chunks: list[Tensor], counted: PolicyBatch) -> Tensor:
        """A token selector's threshold over the counted tokens of the whole optimiser step, every process's
        (one extra forward without a graph; a process with no rows joins with none)."""
        counts = self.objective.mask(counted)  # [rows, t]
        where = torch.zeros(batch.size, dtype=torch.long, device=rows.device)  # a batch row's place in ``rows``
        where[rows] = torch.arange(rows.numel(), device=rows.device)
        values = []
        with sharding.gathered(self.model):  # no graph: any number of forwards
            shared = self.logprobs.prompts(batch, rows)
            for c in chunks:  # the entropies the loss will see: each micro-batch trimmed, as in the update
                part = batch.select(c).trimmed()
                prompts = None if shared is None else shared.select(c)
                entropy = self.logprobs.policy(part, self.config.temperature, True, prompts)[1]
                values.append(entropy[counts[where[c], : part.completion_len]])
        local = torch.cat(values) if values else torch.zeros(0, device=self.processes.device)
        (everyone,), _ = self.processes.gather_rows([local], local.numel())
        return self.objective.entropy_threshold(everyone)

    @staticmethod
    def _policy_batch(batch: StepBatch, rows: Tensor, logp: Tensor, **extra: Any) -> PolicyBatch:
        old = extra.pop("old_logp", None)
        return PolicyBatch(
            logp=logp,
            old_logp=logp.detach() if old is None else old,
            mask=batch.completion_mask[rows, : logp.shape[1]],
            advantages=batch.advantages[rows],
            rewards=batch.rewards[rows],
            group_ids=batch.group_ids[rows],
            **extra,
        )
