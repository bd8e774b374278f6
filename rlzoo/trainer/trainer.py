"""The generic trainer: any recipe, one CPU to many GPUs, on accelerate and transformers.

A step reads top to bottom: rollout -> rewards -> shapers -> filters (with refill) -> gather so
every group is whole -> advantages -> old and reference log-probs where needed -> micro-batched
optimisation passes with global normalisers -> metrics -> checkpoint. The trainer names no
algorithm: everything algorithmic comes from the recipe's parts through their protocols.
"""

import contextlib
import copy
import json
import logging
import math
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from rlzoo import losses, recipes
from rlzoo.errors import ConfigError
from rlzoo.rewards import Scorer, Scores
from rlzoo.trainer.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from rlzoo.trainer.config import TrainConfig
from rlzoo.trainer.lean import LeanGenerator
from rlzoo.trainer.rollout import Generator, HFGenerator, Rollout, concat_rollouts, select_groups
from rlzoo.types import Groups, PolicyBatch

logger = logging.getLogger("rlzoo.trainer")

# Loss metrics that are a micro-batch's share of the step's loss (they add up); others are averaged.
_ADDITIVE = frozenset({"loss/total", "loss/policy", "loss/kl", "loss/entropy"})


@dataclass(frozen=True, eq=False)
class StepBatch:
    """The sequences one process trains on in one step, padded to common prompt/completion widths."""

    input_ids: Int[Tensor, "b s"]
    attention_mask: Bool[Tensor, "b s"]
    completion_mask: Bool[Tensor, "b t"]
    advantages: Float[Tensor, " b"]
    rewards: Float[Tensor, " b"]
    group_ids: Int[Tensor, " b"]

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]

    def select(self, rows: Tensor) -> "StepBatch":
        return StepBatch(*(getattr(self, f)[rows] for f in self.__dataclass_fields__))


class Trainer:
    """Train a causal LM with any recipe.

    Args:
        model: a ``transformers`` causal LM, or a local path / hub name to load one from.
        tokenizer: its tokenizer (loaded from ``model`` when it is a path and this is None).
        recipe: a recipe name, spec or built :class:`rlzoo.recipes.Recipe`.
        train_dataset: a ``datasets.Dataset`` or a list of dicts with a ``prompt`` field; the other
            fields are handed to reward functions as keyword columns.
        reward_funcs: reward functions (TRL's contract), registered names or specs.
        config: trainer knobs.
        eval_dataset: held-out prompts for periodic evaluation (accuracy and completion length).
        generator: the rollout engine; by default the one ``config.generator`` names.
    """

    def __init__(
        self,
        model: PreTrainedModel | str,
        tokenizer: PreTrainedTokenizerBase | None,
        recipe: Any,
        train_dataset: Sequence[dict[str, Any]] | Any,
        reward_funcs: Sequence[Any],
        config: TrainConfig | None = None,
        eval_dataset: Sequence[dict[str, Any]] | Any | None = None,
        generator: Generator | None = None,
    ) -> None:
        self.config = config = config or TrainConfig()
        self.recipe = recipes.build(recipe)
        self.parts = self.recipe.build_parts({"max_completion_length": config.max_completion_length})
        self._check_dataset(train_dataset, "train_dataset")
        if eval_dataset is not None:
            self._check_dataset(eval_dataset, "eval_dataset")
        self._check_recipe_fits_config()
        self.accelerator = Accelerator(
            mixed_precision=self._mixed_precision(),
            log_with=list(config.report_to) or None,
            project_dir=config.output_dir,
        )
        world = self.accelerator.num_processes
        if config.prompts_per_step % world:
            raise ConfigError(
                f"TrainConfig: prompts_per_step={config.prompts_per_step} must be divisible by the "
                f"number of processes ({world})"
            )
        if config.cpu_threads is not None and self.accelerator.device.type == "cpu":
            torch.set_num_threads(config.cpu_threads)
        set_seed(config.seed)
        if isinstance(model, str):
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
            model = AutoModelForCausalLM.from_pretrained(model)
        if tokenizer is None:
            raise ConfigError("Trainer: tokenizer is None; pass the model's tokenizer")
        self.tokenizer = tokenizer
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        if generator is None:
            generator = LeanGenerator() if config.generator == "lean" else HFGenerator()
            if isinstance(generator, LeanGenerator):
                LeanGenerator.check(model)
        self.generator = generator
        self.scorer = Scorer(
            list(reward_funcs),
            weights=list(config.reward_weights) if config.reward_weights else None,
            timeout=config.reward_timeout,
            workers=config.reward_workers,
        )
        objective = self.parts.objective
        self.ref_model = None
        if objective.needs_ref_logp or self.parts.reward_kl is not None:
            self.ref_model = copy.deepcopy(model).eval().requires_grad_(False)
        if config.optimizer == "adamw":
            optimizer = torch.optim.AdamW(
                model.parameters(), lr=config.learning_rate, betas=config.adam_betas, weight_decay=config.weight_decay
            )
        else:
            optimizer = torch.optim.SGD(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        if self.ref_model is not None:
            self.ref_model = self.ref_model.to(self.accelerator.device)
        self.output_dir = Path(config.output_dir)
        self.step = 0
        self.data_position = 0
        self.history: list[dict[str, float | int]] = []
        self._stop_signal: int | None = None

    # -- checks -----------------------------------------------------------------------------------

    @staticmethod
    def _check_dataset(dataset: Any, name: str) -> None:
        if len(dataset) == 0:
            raise ConfigError(f"Trainer: {name} is empty")
        first = dataset[0]
        if not isinstance(first, dict) or "prompt" not in first:
            raise ConfigError(
                f"Trainer: {name} rows must be dicts with a 'prompt' field, got {type(first).__name__}"
                + (f" with keys {sorted(first)}" if isinstance(first, dict) else "")
            )

    def _check_recipe_fits_config(self) -> None:
        """Fail before training when the advantage can never be non-zero at this group size."""
        g = self.config.group_size
        rewards = torch.linspace(0.0, 1.0, 2 * g).view(2, g)
        rewards[1] = 1.0 - rewards[1]
        lengths = torch.arange(2 * g).view(2, g) + 1
        probe = Groups(rewards, lengths, correct=rewards > 0.5, greedy_rewards=torch.tensor([0.5, 0.5]))
        if not bool(self.parts.estimator(probe).ne(0).any()):
            raise ConfigError(
                f"recipe '{self.recipe.name}': its advantage estimator gives every completion advantage 0 at "
                f"group_size={g}, so nothing would be learned; use group_size >= 2"
            )

    def _mixed_precision(self) -> str:
        choice = self.config.mixed_precision
        if choice != "auto":
            return choice
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"

    def _lr_factor(self, step: int) -> float:
        cfg = self.config
        if step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        if cfg.lr_schedule == "linear":
            return max(0.0, 1.0 - progress)
        if cfg.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    # -- the loop ---------------------------------------------------------------------------------

    def train(self, resume: bool | str | Path = False) -> list[dict[str, float | int]]:
        """Run to ``config.steps``; Ctrl-C or SIGTERM saves a checkpoint and returns cleanly."""
        if resume:
            self.resume(None if resume is True else Path(resume))
        acc = self.accelerator
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self._trim_metrics_file()
        acc.init_trackers("rlzoo", config={**self.config.to_dict(), "recipe": self.recipe.to_dict()})
        bar = tqdm(
            total=self.config.steps,
            initial=self.step,
            desc=f"rlzoo {self.recipe.name}",
            disable=not (self.config.progress and acc.is_main_process),
            dynamic_ncols=True,
        )
        with self._signals_to_flag():
            try:
                while self.step < self.config.steps and self._stop_signal is None:
                    metrics = self.train_step()
                    self.step += 1
                    self._log(metrics)
                    bar.update(1)
                    bar.set_postfix(self._postfix(metrics), refresh=False)
                    if self.config.eval_every and self.step % self.config.eval_every == 0:
                        self._log({"step": self.step, **self.evaluate()})
                    if self.config.save_every and self.step % self.config.save_every == 0:
                        self.save()
            finally:
                bar.close()
        self.save()
        if self._stop_signal is not None:
            logger.warning("stopped by signal %d at step %d; checkpoint saved", self._stop_signal, self.step)
        acc.end_training()
        return self.history

    def train_step(self) -> dict[str, float]:
        """One step: rollout, score, shape, filter, advantages, update. Returns its metrics."""
        timer = _Timer()
        for group in self.optimizer.param_groups:  # the schedule is a function of the step: nothing to save
            group["lr"] = self.config.learning_rate * self._lr_factor(self.step)
        rollout, groups, keep, metrics = self._collect(timer)
        everyone = self._gather_groups(groups)
        with timer("score"):
            advantages = self.parts.estimator(everyone)
            for f, k in zip(self.parts.filters, self._gather_masks(keep), strict=True):
                if f.mode == "zero":
                    advantages = torch.where(k, advantages, 0.0)
        advantages = advantages[self._local_rows(groups.n)]
        metrics |= self._advantage_metrics(everyone, advantages[groups.mask])
        batch = self._step_batch(rollout, groups, advantages)
        with timer("update"):
            metrics |= self._update(batch)
        metrics |= timer.metrics(tokens=float(rollout.lengths.sum()))
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        return metrics

    # -- rollout, scoring, filtering ----------------------------------------------------------------

    def _collect(self, timer: "_Timer") -> tuple[Rollout, Groups, list[Tensor], dict[str, float]]:
        """Generate and score until this step has its groups, refilling dropped ones (bounded rounds).

        Groups that drop-mode filters remove entirely are replaced by fresh prompts for up to
        ``recipe.refill_rounds`` extra rounds (DAPO's dynamic sampling); the rounds are
        synchronised across processes. The first round is always kept whole, so a step whose
        groups are all filtered out is a logged no-op.
        """
        per_process = self.config.prompts_per_step // self.accelerator.num_processes
        pieces: list[tuple[Rollout, Groups, list[Tensor]]] = []
        round_metrics: list[dict[str, float]] = []
        have = 0
        for round_index in range(self.parts.refill_rounds + 1):
            if round_index and self._all_processes(have >= per_process):
                break
            rows = self._next_rows()
            if have >= per_process:
                continue  # this process is full; the others refill
            rollout, groups, keep, m = self._rollout_round(rows, timer)
            round_metrics.append(m)
            m["groups/all_equal_frac"] = _all_equal(groups).float().mean().item()
            drop = [k for f, k in zip(self.parts.filters, keep, strict=True) if f.mode == "drop"]
            live = torch.stack(drop).all(0).any(1) if drop else groups.mask.any(1)
            m["groups/kept_frac"] = float(live.float().mean())
            if round_index == 0:
                have = int(live.sum())
                refill = have < per_process and self.parts.refill_rounds > 0
                pieces.append(_select((rollout, groups, keep), live.nonzero().squeeze(1)) if refill else (rollout, groups, keep))
                continue
            take = live.nonzero().squeeze(1)[: per_process - have]
            pieces.append(_select((rollout, groups, keep), take))
            have += take.numel()
        if self.parts.refill_rounds and have < per_process:
            logger.warning(
                "step %d: only %d of %d groups survived the filters after %d refill rounds; training on those "
                "(raise the recipe's refill_rounds, e.g. --set refill_rounds=%d)",
                self.step + 1, have, per_process, self.parts.refill_rounds, 2 * self.parts.refill_rounds,
            )
        rollout = concat_rollouts([p[0] for p in pieces], self.tokenizer.pad_token_id)
        groups = _concat_groups([p[1] for p in pieces])
        keep = [torch.cat(ks) for ks in zip(*(p[2] for p in pieces), strict=True)]
        for f, k in zip(self.parts.filters, keep, strict=True):
            if f.mode == "drop":
                groups = groups.replace(mask=groups.mask & k)
        metrics = {k: sum(m[k] for m in round_metrics if k in m) / len(round_metrics) for k in round_metrics[0]}
        return rollout, groups, keep, metrics | {"groups/rounds": float(len(round_metrics))}

    def _rollout_round(
        self, rows: list[dict[str, Any]], timer: "_Timer"
    ) -> tuple[Rollout, Groups, list[Tensor], dict[str, float]]:
        cfg, g = self.config, self.config.group_size
        prompts = [row["prompt"] for row in rows]
        with timer("generate"):
            rollout = self.generator(
                self.accelerator.unwrap_model(self.model),
                self.tokenizer,
                prompts,
                group_size=g,
                max_new_tokens=cfg.max_completion_length,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
            )
        with timer("score"):
            columns = {k: [row[k] for row in rows for _ in range(g)] for k in rows[0] if k != "prompt"}
            scores = self.scorer([p for p in prompts for _ in range(g)], rollout.texts, columns, group_size=g)
            rewards = scores.rewards
            if self.parts.reward_kl is not None:
                rewards = rewards - self.parts.reward_kl_coef * self._sequence_kl(rollout).view_as(rewards)
            groups = Groups(rewards, rollout.lengths.view(-1, g), mask=scores.valid, correct=scores.correct)
            for shaper in self.parts.shapers:
                groups = shaper(groups)
            keep = [f(groups) for f in self.parts.filters]
        return rollout, groups, keep, _score_metrics(scores, groups, rollout)

    def _next_rows(self) -> list[dict[str, Any]]:
        """This process's share of the next ``prompts_per_step`` prompts of a seeded epoch order."""
        n_total = self.config.prompts_per_step
        size = len(self.train_dataset)
        out = []
        for i in range(self.data_position, self.data_position + n_total):
            epoch, index = divmod(i, size)
            order = self._epoch_order(epoch)
            out.append(self.train_dataset[int(order[index])])
        self.data_position += n_total
        share = n_total // self.accelerator.num_processes
        start = self.accelerator.process_index * share
        return out[start : start + share]

    def _epoch_order(self, epoch: int) -> Tensor:
        cached = getattr(self, "_order", None)
        if cached is None or cached[0] != epoch:
            gen = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
            self._order = (epoch, torch.randperm(len(self.train_dataset), generator=gen))
        return self._order[1]

    # -- across processes -----------------------------------------------------------------------

    def _gather_groups(self, groups: Groups) -> Groups:
        """Every process's groups, whole, in process order (so batch-level statistics are global)."""
        if self.accelerator.num_processes == 1:
            return groups
        fields = [groups.rewards, groups.lengths, groups.mask]
        fields += [] if groups.correct is None else [groups.correct]
        rewards, lengths, mask, *correct = self._gather_rows(fields, groups.n)
        return Groups(rewards, lengths, mask=mask, correct=correct[0] if correct else None)

    def _gather_masks(self, masks: list[Tensor]) -> list[Tensor]:
        if self.accelerator.num_processes == 1 or not masks:
            return masks
        return self._gather_rows(masks, masks[0].shape[0])

    def _gather_rows(self, tensors: list[Tensor], n_local: int) -> list[Tensor]:
        """All-gather [n, ...] tensors whose n differs per process (padded, then unpadded)."""
        counts = self._gather_counts(n_local)
        width = max(counts)
        rows = torch.cat([torch.arange(c) + i * width for i, c in enumerate(counts)]).to(self.accelerator.device)
        out = []
        for x in tensors:
            padded = torch.zeros((width, *x.shape[1:]), dtype=x.dtype, device=x.device)
            padded[:n_local] = x
            out.append(self.accelerator.gather(padded)[rows])
        return out

    def _local_rows(self, n_local: int) -> slice:
        """Where this process's groups sit in the gathered step."""
        counts = self._gather_counts(n_local)
        start = sum(counts[: self.accelerator.process_index])
        return slice(start, start + n_local)

    def _gather_counts(self, value: int) -> list[int]:
        if self.accelerator.num_processes == 1:
            return [value]
        t = torch.tensor([value], device=self.accelerator.device)
        return [int(x) for x in self.accelerator.gather(t)]

    def _all_processes(self, flag: bool) -> bool:
        return all(self._gather_counts(int(flag)))

    # -- update -----------------------------------------------------------------------------------

    def _step_batch(self, rollout: Rollout, groups: Groups, advantages: Tensor) -> StepBatch:
        """The valid sequences of this process, prompt and completion joined, with global group ids."""
        g = groups.g
        valid = groups.mask.reshape(-1)
        rows = valid.nonzero().squeeze(1)
        prompt_rows = rows // g
        input_ids = torch.cat([rollout.prompt_ids[prompt_rows], rollout.completion_ids[rows]], 1)
        attention = torch.cat([rollout.prompt_mask[prompt_rows], rollout.completion_mask[rows]], 1)
        offset = self._local_rows(groups.n).start
        return StepBatch(
            input_ids=input_ids,
            attention_mask=attention,
            completion_mask=rollout.completion_mask[rows],
            advantages=advantages.reshape(-1)[rows],
            rewards=groups.rewards.reshape(-1)[rows],
            group_ids=prompt_rows + offset,
        )

    def _micro_batches(self, batch: StepBatch, rows: Tensor) -> list[Tensor]:
        """``rows`` cut into micro-batches (none when it is empty); whole groups stay together when the
        objective needs it."""
        if rows.numel() == 0:
            return []
        size = self.config.micro_batch_size
        if self.parts.objective.needs_whole_groups:
            ids = batch.group_ids[rows]
            starts = torch.cat([torch.tensor([True], device=ids.device), ids[1:] != ids[:-1]]).nonzero().squeeze(1)
            bounds = [*starts.tolist(), rows.numel()]
            out, current = [], 0
            for end in bounds[1:]:
                if end - current >= size or end == rows.numel():
                    out.append(rows[current:end])
                    current = end
            return out
        return list(rows.split(size))

    def _mini_batches(self, batch: StepBatch) -> list[Tensor]:
        """This process's rows in ``config.mini_batches`` parts of whole groups (a part may be empty)."""
        parts = self.config.mini_batches
        rows = torch.arange(batch.size, device=batch.input_ids.device)
        if parts == 1:
            return [rows]
        _, local_group = batch.group_ids.unique_consecutive(return_inverse=True)
        n_groups = int(local_group.max()) + 1 if batch.size else 0
        part = local_group * parts // max(n_groups, 1)
        return [rows[part == j] for j in range(parts)]

    def _update(self, batch: StepBatch) -> dict[str, float]:
        """``passes`` x ``mini_batches`` optimiser steps; every process joins every collective."""
        objective, cfg = self.parts.objective, self.config
        if self._all_processes(batch.size == 0):
            return {"update/skipped": 1.0}  # every group was filtered out: a logged no-op
        completion_len = batch.completion_mask.shape[1]
        everything = self._micro_batches(batch, torch.arange(batch.size, device=batch.input_ids.device))
        old_logp = ref_logp = None
        with torch.no_grad():
            if cfg.passes > 1 or cfg.mini_batches > 1:  # later optimiser steps are off-policy
                old_logp = self._logp_rows(self.model, batch, everything, completion_len)
            if objective.needs_ref_logp:
                ref_logp = self._logp_rows(self.ref_model, batch, everything, completion_len)
        sums: dict[str, float] = {}
        steps = 0
        for _ in range(cfg.passes):
            for rows in self._mini_batches(batch):
                if self._all_processes(rows.numel() == 0):
                    continue
                for name, value in self._optimizer_step(batch, rows, old_logp, ref_logp, completion_len).items():
                    sums[name] = sums.get(name, 0.0) + value
                steps += 1
        return {k: v / steps for k, v in sums.items()} | {"update/skipped": 0.0, "update/optimizer_steps": float(steps)}

    def _logp_rows(self, model: torch.nn.Module, batch: StepBatch, chunks: list[Tensor], completion_len: int) -> Tensor:
        """Detached log-probs of every row of ``batch``, computed chunk by chunk."""
        if not chunks:
            return batch.completion_mask.new_zeros(batch.completion_mask.shape, dtype=torch.float32)
        return torch.cat([self._logp(model, batch.select(c), completion_len)[0] for c in chunks])

    def _optimizer_step(
        self, batch: StepBatch, rows: Tensor, old_logp: Tensor | None, ref_logp: Tensor | None, completion_len: int
    ) -> dict[str, float]:
        """One optimiser step on ``rows`` (possibly none here, while other processes train)."""
        objective, acc = self.parts.objective, self.accelerator
        k = self.config.prompts_per_step
        chunks = self._micro_batches(batch, rows)
        empty = batch.completion_mask.new_zeros((0, completion_len), dtype=torch.float32)
        counting = [self._policy_batch(batch, c, empty.new_zeros(c.numel(), completion_len)) for c in chunks] or [
            self._policy_batch(batch, rows, empty)
        ]
        totals = sum((objective.totals(b, k) for b in counting[1:]), objective.totals(counting[0], k))
        totals = totals.map(lambda t: acc.reduce(t, "sum")) if acc.num_processes > 1 else totals
        sums: dict[str, float] = {}
        if not chunks:  # nothing here: join the others' gradient all-reduce with a zero gradient
            self._idle_backward()
        for i, c in enumerate(chunks):
            logp, entropy = self._logp(self.model, batch.select(c), completion_len, objective.needs_entropy)
            mb = self._policy_batch(
                batch,
                c,
                logp,
                old_logp=None if old_logp is None else old_logp[c],
                ref_logp=None if ref_logp is None else ref_logp[c],
                entropy=entropy,
                totals=totals,
            )
            out = objective(mb)
            sync = contextlib.nullcontext() if i == len(chunks) - 1 else acc.no_sync(self.model)
            with sync:
                acc.backward(out.loss * acc.num_processes)
            for name, value in {"loss/total": out.loss.detach(), **out.metrics}.items():
                sums[name] = sums.get(name, 0.0) + float(value) / (1 if name in _ADDITIVE else len(chunks))
        if self.config.max_grad_norm is not None:
            sums["grad_norm"] = float(acc.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return sums

    def _idle_backward(self) -> None:
        """A backward pass with zero gradient, for a process that has nothing to train on this step."""
        ids = torch.full((1, 1), self.tokenizer.pad_token_id, device=self.accelerator.device)
        self.accelerator.backward(self.model(input_ids=ids).logits.sum() * 0.0)

    def _policy_batch(self, batch: StepBatch, rows: Tensor, logp: Tensor, **extra: Any) -> PolicyBatch:
        old = extra.pop("old_logp", None)
        return PolicyBatch(
            logp=logp,
            old_logp=logp.detach() if old is None else old,
            mask=batch.completion_mask[rows],
            advantages=batch.advantages[rows],
            rewards=batch.rewards[rows],
            group_ids=batch.group_ids[rows],
            **extra,
        )

    def _logp(
        self, model: torch.nn.Module, batch: StepBatch, completion_len: int, entropy: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Log-probs (and entropy) of the completion tokens at the sampling temperature."""
        position_ids = (batch.attention_mask.long().cumsum(1) - 1).clamp_min(0)
        out = model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask.long(),
            position_ids=position_ids,
            logits_to_keep=completion_len + 1,
            use_cache=False,
        )
        logits = out.logits[:, :-1].float()
        labels = batch.input_ids[:, -completion_len:]
        result = losses.token_logprobs(
            logits, labels, temperature=self.config.temperature or 1.0, entropy=entropy
        )
        return result.logp, result.entropy

    def _sequence_kl(self, rollout: Rollout) -> Tensor:
        """Detached sum over each completion of the reward-side KL estimator (policy vs reference)."""
        n = rollout.prompt_ids.shape[0]
        g = rollout.group_size
        rows = torch.arange(n * g, device=rollout.completion_ids.device)
        batch = StepBatch(
            input_ids=torch.cat([rollout.prompt_ids[rows // g], rollout.completion_ids], 1),
            attention_mask=torch.cat([rollout.prompt_mask[rows // g], rollout.completion_mask], 1),
            completion_mask=rollout.completion_mask,
            advantages=torch.zeros(n * g),
            rewards=torch.zeros(n * g),
            group_ids=rows // g,
        )
        t = rollout.completion_ids.shape[1]
        with torch.no_grad():
            logp = self._logp(self.model, batch, t)[0]
            ref = self._logp(self.ref_model, batch, t)[0]
        kl = self.parts.reward_kl(logp, ref)
        return torch.where(rollout.completion_mask, kl, 0.0).sum(1)

    # -- metrics, evaluation, checkpoints ------------------------------------------------------------

    @staticmethod
    def _advantage_metrics(everyone: Groups, adv: Tensor) -> dict[str, float]:
        """How many groups are trained on (after filters) and statistics of their advantages."""
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

    @torch.no_grad()
    def evaluate(self, dataset: Any = None, *, greedy: bool = True) -> dict[str, float]:
        """Accuracy (where correctness is known, else mean reward) and completion length on held-out prompts.

        Sampled evaluation draws from its own seeded random stream, so evaluating never changes
        what training samples next (resumed runs stay exact).
        """
        dataset = dataset if dataset is not None else self.eval_dataset
        if dataset is None:
            return {}
        device = self.accelerator.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.config.seed)
            return self._evaluate(dataset, greedy)

    def _evaluate(self, dataset: Any, greedy: bool) -> dict[str, float]:
        size = min(len(dataset), self.config.eval_size)
        model = self.accelerator.unwrap_model(self.model)
        correct, rewards, lengths = [], [], []
        for start in range(0, size, self.config.eval_batch_size):
            rows = [dataset[i] for i in range(start, min(size, start + self.config.eval_batch_size))]
            rollout = self.generator(
                model, self.tokenizer, [r["prompt"] for r in rows], group_size=1,
                max_new_tokens=self.config.max_completion_length,
                temperature=0.0 if greedy else self.config.temperature, top_p=self.config.top_p,
            )
            columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}
            scores = self.scorer([r["prompt"] for r in rows], rollout.texts, columns, group_size=1)
            rewards.append(torch.where(scores.valid, scores.rewards, 0.0).reshape(-1))
            if scores.correct is not None:
                correct.append(scores.correct.reshape(-1).float())
            lengths.append(rollout.lengths.float())
        mode = "greedy" if greedy else "sampled"
        out = {f"eval/{mode}/reward": float(torch.cat(rewards).mean()),
               f"eval/{mode}/length": float(torch.cat(lengths).mean())}
        if correct:
            out[f"eval/{mode}/accuracy"] = float(torch.cat(correct).mean())
        return out

    def save(self) -> Path:
        """Checkpoint the current step (model, optimiser, RNG, data position)."""
        acc = self.accelerator
        return save_checkpoint(
            self.output_dir / "checkpoints",
            self.step,
            model=acc.unwrap_model(self.model),
            optimizer=self.optimizer,
            state={"data_position": self.data_position, "recipe": self.recipe.to_dict(), "config": self.config.to_dict()},
            rank=acc.process_index,
            is_main=acc.is_main_process,
            barrier=acc.wait_for_everyone,
        )

    def resume(self, path: Path | None = None) -> None:
        """Continue from a checkpoint (the latest under ``output_dir`` when ``path`` is None)."""
        path = path or latest_checkpoint(self.output_dir / "checkpoints")
        if path is None:
            raise ConfigError(f"resume: no checkpoint under {self.output_dir / 'checkpoints'}")
        state = load_checkpoint(
            path,
            model=self.accelerator.unwrap_model(self.model),
            optimizer=self.optimizer,
            rank=self.accelerator.process_index,
        )
        self.step, self.data_position = state["step"], state["data_position"]

    def _log(self, metrics: dict[str, float]) -> None:
        entry = {"step": self.step, **metrics}
        self.history.append(entry)
        if self.accelerator.is_main_process and self.step % self.config.log_every == 0:
            with open(self.output_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(entry) + "\n")
        self.accelerator.log(metrics, step=self.step)

    def _trim_metrics_file(self) -> None:
        """On resume, drop logged steps after the checkpoint (they will be run again)."""
        path = self.output_dir / "metrics.jsonl"
        if path.exists():
            lines = [ln for ln in path.read_text().splitlines() if json.loads(ln)["step"] <= self.step]
            path.write_text("".join(ln + "\n" for ln in lines))

    @staticmethod
    def _postfix(metrics: dict[str, float]) -> dict[str, str]:
        keys = {"reward/mean": "reward", "accuracy": "acc", "length/mean": "len", "loss/total": "loss"}
        return {short: f"{metrics[k]:.3g}" for k, short in keys.items() if k in metrics}

    @contextlib.contextmanager
    def _signals_to_flag(self) -> Iterator[None]:
        """SIGINT/SIGTERM finish the current step, then the loop saves and returns; a second SIGINT aborts."""

        def handler(signum: int, frame: Any) -> None:
            if self._stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._stop_signal = signum
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


def _select(
    piece: tuple[Rollout, Groups, list[Tensor]], groups: Tensor
) -> tuple[Rollout, Groups, list[Tensor]]:
    rollout, g, keep = piece
    return select_groups(rollout, groups), _concat_groups([g], groups), [k[groups] for k in keep]


def _concat_groups(parts: list[Groups], rows: Tensor | None = None) -> Groups:
    """Stack groups of several rounds (optionally only some rows of a single one)."""

    def join(name: str) -> Tensor | None:
        values = [getattr(p, name) for p in parts]
        if values[0] is None:
            return None
        out = torch.cat(values)
        return out if rows is None else out[rows]

    return Groups(join("rewards"), join("lengths"), mask=join("mask"), correct=join("correct"))


def _all_equal(groups: Groups) -> Tensor:
    """Groups whose valid rewards are all equal (and that have any valid completion)."""
    low = torch.where(groups.mask, groups.rewards, torch.inf).amin(1)
    high = torch.where(groups.mask, groups.rewards, -torch.inf).amax(1)
    return (low == high) & groups.mask.any(1)


def _score_metrics(scores: Scores, groups: Groups, rollout: Rollout) -> dict[str, float]:
    """Rewards of everything generated in a round: total, shaped, per function, accuracy, lengths."""
    valid = scores.valid
    any_valid = bool(valid.any())
    lengths = groups.lengths.float()
    m = {
        "reward/mean": float(scores.rewards[valid].mean()) if any_valid else 0.0,
        "reward/shaped_mean": float(groups.rewards[valid].mean()) if any_valid else 0.0,
        "reward/valid_frac": float(valid.float().mean()),
        "length/mean": float(lengths.mean()),
        "length/min": float(lengths.min()),
        "length/max": float(lengths.max()),
        "length/truncated_frac": float(rollout.truncated.float().mean()),
    }
    for name, values in scores.per_function.items():
        m[f"reward/{name}/mean"] = float(values[valid].mean()) if any_valid else 0.0
    m |= {k: float(v) for k, v in scores.metrics.items()}
    if scores.correct is not None:
        m["accuracy"] = float(scores.correct[valid].float().mean()) if any_valid else 0.0
    return m


class _Timer:
    """Wall time per phase of a step."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.phases: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.phases[phase] = self.phases.get(phase, 0.0) + time.perf_counter() - t0

    def metrics(self, tokens: float) -> dict[str, float]:
        total = time.perf_counter() - self.start
        out = {f"time/{k}": v for k, v in self.phases.items()}
        return out | {"time/step": total, "tokens_per_s": tokens / total if total > 0 else 0.0}

