"""The generic trainer: any recipe, one CPU to many GPUs, on accelerate and transformers.

A step reads top to bottom: collect (generate -> score -> shape -> filter, with refill) -> gather
so every group is whole -> advantages -> update (old and reference log-probs where needed,
micro-batched optimiser steps with global normalisers) -> metrics reduced across processes ->
evaluate / save. Each job lives in its own module beside this one; the trainer names no algorithm:
everything algorithmic comes from the recipe's parts through their protocols.
"""

import functools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlzoo import recipes
from rlzoo.errors import ConfigError, DataError
from rlzoo.rewards import Scorer
from rlzoo.trainer import evaluation, setup, sharding
from rlzoo.trainer.batching import StepBatch
from rlzoo.trainer.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, save_pretrained
from rlzoo.trainer.collect import Collector
from rlzoo.trainer.config import TrainConfig
from rlzoo.trainer.distributed import Processes, StopFlag
from rlzoo.trainer.engines import Generator, build_generator
from rlzoo.trainer.engines.base import eos_token_ids
from rlzoo.trainer.forward import LogProbs, sequence_kl
from rlzoo.trainer.metrics import EmptySteps, MetricsFile, Timer, advantage_metrics, postfix, reduce_metrics
from rlzoo.trainer.sampler import PromptSampler
from rlzoo.trainer.update import NonFiniteUpdate, Updater

logger = logging.getLogger("rlzoo.trainer")


class Trainer:
    """Train a causal LM with any recipe.

    Args:
        model: a ``transformers`` causal LM, or a local path / hub name to load one from.
        tokenizer: its tokenizer (loaded from ``model`` when it is a path and this is None).
        recipe: a recipe name, spec or built :class:`rlzoo.recipes.Recipe`.
        train_dataset: a ``datasets.Dataset`` or a list of dicts with a ``prompt`` field; the other
            fields are handed to reward functions as keyword columns.
        reward_funcs: reward functions (TRL's contract), registered names or specs; a mapping
            ``{name: function}`` names them in the metrics.
        config: trainer knobs.
        eval_dataset: held-out prompts for periodic evaluation (accuracy and completion length).
        generator: the rollout engine; by default the one ``config.generator`` names.
        peft_config: a ``peft`` config (e.g. ``LoraConfig``, TRL's argument name): only the adapters
            train, and the reference policy is the model with its adapters disabled (no copy).
    """

    def __init__(
        self,
        model: PreTrainedModel | str,
        tokenizer: PreTrainedTokenizerBase | None,
        recipe: Any,
        train_dataset: Sequence[dict[str, Any]] | Any,
        reward_funcs: Sequence[Any] | Mapping[str, Any],
        config: TrainConfig | None = None,
        eval_dataset: Sequence[dict[str, Any]] | Any | None = None,
        generator: Generator | None = None,
        peft_config: Any | None = None,
    ) -> None:
        self.config = cfg = config or TrainConfig()
        self.recipe = recipes.build(recipe)
        self.parts = parts = self.recipe.build_parts({"max_completion_length": cfg.max_completion_length})
        setup.check_dataset(train_dataset, "train_dataset")
        if eval_dataset is not None:
            setup.check_dataset(eval_dataset, "eval_dataset")
        weights = list(cfg.reward_weights) if cfg.reward_weights else None
        funcs = reward_funcs if isinstance(reward_funcs, Mapping) else list(reward_funcs)
        self.scorer = Scorer(funcs, weights=weights, timeout=cfg.reward_timeout, workers=cfg.reward_workers,
                             combine=cfg.reward_aggregation, verifier=cfg.verifier)
        setup.check_verdict(parts, self.recipe.name, self.scorer)
        self.accelerator = acc = sharding.accelerator(
            cpu=setup.cpu_only(), mixed_precision=setup.mixed_precision(cfg), log_with=list(cfg.report_to) or None,
            project_dir=cfg.output_dir,
        )
        self.processes = Processes(acc)
        setup.check_processes(self.processes.world)
        setup.check_recipe_fits_config(self.recipe.name, parts, cfg, self.processes.world)
        if cfg.cpu_threads is not None and acc.device.type == "cpu":
            torch.set_num_threads(cfg.cpu_threads)
        set_seed(cfg.seed)
        model, self.tokenizer = setup.load_model(model, tokenizer, cfg.dtype)
        for data, name in ((train_dataset, "train_dataset"), (eval_dataset, "eval_dataset")):
            if data is not None:
                setup.check_data_fits_tokenizer(data, self.tokenizer, name)
        self.eos = eos_token_ids(self.tokenizer, model)
        self.max_positions = getattr(model.config, "max_position_embeddings", None)
        model = setup.adapt(model, peft_config, cfg.gradient_checkpointing)
        self.generator = generator or build_generator(cfg.generator, model, cfg)
        needs_ref = parts.objective.needs_ref_logp or parts.reward_kl is not None
        ref_model = setup.reference_copy(model) if needs_ref and peft_config is None else None
        self.model, self.optimizer, self.ref_model = setup.prepare(acc, model, ref_model, cfg, self.generator)
        self.logprobs = LogProbs(self.model, acc.autocast, reference=self.ref_model,
                                 adapters_as_reference=needs_ref and peft_config is not None,
                                 hidden_states=cfg.logprobs_from_hidden,
                                 share_prompts=cfg.micro_batch_size // 2 if cfg.share_prompts else 0)
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        self.output_dir = Path(cfg.output_dir)
        self.metrics_file = MetricsFile(self.output_dir / "metrics.jsonl")
        self.sampler = PromptSampler(train_dataset, cfg.seed, self.processes.rank, self.processes.world)
        self.stop = StopFlag(self.processes)
        self.scorer.should_stop = lambda: self.stop.signal is not None  # no reward retries once stopping
        self.collect = Collector(
            generator=self.generator, scorer=self.scorer, parts=parts, tokenizer=self.tokenizer,
            sampler=self.sampler, processes=self.processes, config=cfg, eos=self.eos, max_positions=self.max_positions,
            reward_kl=None if parts.reward_kl is None else functools.partial(
                sequence_kl, self.logprobs, parts.reward_kl, cfg.temperature, cfg.micro_batch_size
            ),
        )
        self.update = Updater(
            accelerator=acc, processes=self.processes, model=self.model, logprobs=self.logprobs,
            optimizer=self.optimizer, objective=parts.objective, config=cfg,
        )
        self.step = 0
        self.history: list[dict[str, float | int]] = []
        self._saved_step: int | None = None
        self.empty_steps = EmptySteps(cfg.max_empty_steps, cfg.prompts_per_step * cfg.group_size, self.scorer.names)

    # -- the loop ---------------------------------------------------------------------------------

    def train(self, resume: bool | str | Path = False) -> list[dict[str, float | int]]:
        """Run to ``config.steps``; SIGINT or SIGTERM to any process saves a checkpoint and returns cleanly."""
        if resume:
            self.resume(None if resume is True else Path(resume))
        cfg, acc = self.config, self.accelerator
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self.metrics_file.trim(self.step)
        acc.init_trackers("rlzoo", config={**cfg.to_dict(), "recipe": self.recipe.to_dict()})
        show = cfg.progress and acc.is_main_process
        bar = tqdm(total=cfg.steps, initial=self.step, desc=f"rlzoo {self.recipe.name}", disable=not show,
                   dynamic_ncols=True)
        self._saved_step = None
        with self.stop.installed():
            try:
                while self.step < cfg.steps:
                    metrics = self.train_step()
                    self.step += 1
                    self._log(metrics)
                    bar.update(1)
                    bar.set_postfix(postfix(metrics), refresh=False)
                    self.empty_steps.check(metrics, self.step)
                    if cfg.eval_every and self.step % cfg.eval_every == 0:
                        self._log(self.evaluate())
                    if self.stop.agreed():
                        break
                    if cfg.save_every and self.step % cfg.save_every == 0:
                        self.save()
            except NonFiniteUpdate as exc:
                saved = self._save_after_error()
                raise DataError(
                    f"step {self.step + 1} diverged: {exc}; last good checkpoint: {saved or 'none'}"
                ) from exc
            except BaseException:
                self._save_after_error()
                raise
            finally:
                bar.close()
        if self._saved_step != self.step:
            self.save()
        if self.step < cfg.steps:
            logger.warning("stopped by a signal at step %d; checkpoint saved", self.step)
        for tracker in acc.trackers:  # not acc.end_training(): it ends the process group, and evaluation may follow
            tracker.finish()
        return self.history

    def train_step(self) -> dict[str, float]:
        """One step: collect, advantages over the whole step, update. Returns its metrics (all processes')."""
        timer = Timer()
        lr = self.update.start_step(self.step)
        # a sharded policy (and the reference the reward KL reads) is whole while it generates
        with sharding.gathered(self.model, self.ref_model if self.parts.reward_kl is not None else None):
            data = self.collect(self.model, timer, self.step)
        everyone, keep, offset = self.processes.gather_groups(data.groups, data.keep)
        with timer("score"):
            advantages = self.parts.estimator(everyone)
            for f, k in zip(self.parts.filters, keep, strict=True):
                if f.mode == "zero":
                    advantages = advantages.where(k, 0.0)
        metrics = data.metrics | advantage_metrics(everyone, advantages)
        batch = StepBatch.of(data.rollout, data.groups, advantages[offset : offset + data.groups.n], offset)
        with timer("update"):
            metrics |= self.update(batch)
        metrics |= timer.metrics(tokens=float(data.rollout.lengths.sum()))
        return reduce_metrics(self.processes, metrics | {"lr": lr})

    # -- evaluation, checkpoints, logs ------------------------------------------------------------

    def evaluate(self, dataset: Any = None, *, greedy: bool = True) -> dict[str, float]:
        """Held-out reward, accuracy (where correctness is known) and length, sharded over the processes."""
        dataset = dataset if dataset is not None else self.eval_dataset
        if dataset is None:
            return {}
        cfg = self.config
        greedy = greedy or cfg.temperature == 0
        rows = [dataset[i] for i in range(min(len(dataset), cfg.eval_size))]
        with sharding.gathered(self.model):
            out = evaluation.evaluate(
                self.model, self.tokenizer, rows, scorer=self.scorer,
                generator=self.generator, greedy=greedy, max_new_tokens=cfg.max_completion_length,
                temperature=cfg.temperature or 1.0, top_p=cfg.top_p, batch_size=cfg.eval_batch_size, seed=cfg.seed,
                processes=self.processes, eos=self.eos, max_prompt_length=cfg.max_prompt_length,
            )
        mode = "greedy" if greedy else "sampled"
        return {f"eval/{mode}/{k}": v for k, v in out.items()}

    def _save_after_error(self) -> Path | None:
        """Save the last completed step when an error escapes ``train``, if the weights are still those of
        that step (the failed step has not stepped the optimiser). One process only: with several, the
        others may be waiting in a collective that will never complete."""
        if self.processes.world > 1 or self.update.touched or self._saved_step == self.step or self.step == 0:
            return None
        try:
            path = self.save()
        except Exception as exc:  # the original error matters more; say why nothing was saved
            logger.error("could not save step %d after the error: %s", self.step, exc)
            return None
        logger.warning("saved step %d (the last completed one) before the error: %s", self.step, path)
        return path

    def save(self) -> Path:
        """Checkpoint the current step (model, optimiser, every process's RNG, data position)."""
        acc = self.accelerator
        path = save_checkpoint(
            self.output_dir / "checkpoints",
            self.step,
            model=self.model,
            optimizer=self.optimizer,
            state={**self.sampler.state_dict(), "recipe": self.recipe.to_dict(), "config": self.config.to_dict()},
            rank=acc.process_index,
            is_main=acc.is_main_process,
            barrier=acc.wait_for_everyone,
            keep=self.config.save_total_limit,
        )
        self._saved_step = self.step
        return path

    def save_pretrained(self, directory: str | Path) -> None:
        """The model (with LoRA: the adapter) and the tokenizer, whole, in ``directory``: every process calls
        this (a sharded model is gathered), the main one writes."""
        acc = self.accelerator
        save_pretrained(self.model, Path(directory), is_main=acc.is_main_process, barrier=acc.wait_for_everyone)
        if acc.is_main_process:
            self.tokenizer.save_pretrained(directory)

    def resume(self, path: Path | None = None) -> None:
        """Continue from a checkpoint (the latest under ``output_dir`` when ``path`` is None)."""
        path = path or latest_checkpoint(self.output_dir / "checkpoints")
        if path is None:
            raise ConfigError(f"resume: no checkpoint under {self.output_dir / 'checkpoints'}")
        state = load_checkpoint(
            path, model=self.model, optimizer=self.optimizer,
            rank=self.accelerator.process_index,
        )
        self.step = state["step"]
        self.sampler.load_state_dict(state)

    def _log(self, metrics: dict[str, float]) -> None:
        entry = {"step": self.step, **metrics}
        self.history.append(entry)
        if self.accelerator.is_main_process and self.step % self.config.log_every == 0:
            self.metrics_file.append(entry)
        self.accelerator.log(metrics, step=self.step)
