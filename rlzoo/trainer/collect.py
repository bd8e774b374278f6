"""A step's data: generate -> score -> shape -> filter, refilling dropped groups for a bounded number of rounds."""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from rlzoo.recipes import Parts
from rlzoo.rewards import Scorer, Scores
from rlzoo.text import is_chat
from rlzoo.trainer.config import TrainConfig
from rlzoo.trainer.distributed import Processes
from rlzoo.trainer.engines import Generator, Rollout
from rlzoo.trainer.engines.base import Prompts, concat_rollouts, encode_prompts, select_groups
from rlzoo.trainer.metrics import Timer, mean_over_rounds, round_metrics
from rlzoo.trainer.sampler import PromptSampler
from rlzoo.types import Groups

logger = logging.getLogger("rlzoo.trainer")


@dataclass(frozen=True)
class TrainerState:
    """What reward functions get as TRL's ``trainer_state``: the fields reward schedules read."""

    global_step: int
    max_steps: int
    epoch: float


def _ignored(*args: Any, **kwargs: Any) -> None:
    """Stands in for TRL's ``log_extra`` / ``log_metric`` callbacks (accepted, not recorded)."""


def reward_context(state: TrainerState | None) -> dict[str, Any]:
    """The keyword arguments TRL 1.16 hands every reward function besides the columns."""
    return ({} if state is None else {"trainer_state": state}) | {"log_extra": _ignored, "log_metric": _ignored}


def score_rollout(
    scorer: Scorer,
    prompts: list[Any],
    rows: list[dict[str, Any]],
    rollout: Rollout,
    context: dict[str, Any],
) -> Scores:
    """Score ``rollout`` as TRL calls reward functions: completions in the prompts' form (text, or
    ``[{"role": "assistant", "content": text}]`` for chat prompts), ``completion_ids`` (token ids,
    EOS included, as lists), every dataset column, and ``context``; the scores come back on the
    rollout's device."""
    g = rollout.group_size
    texts = rollout.texts
    completions = [[{"role": "assistant", "content": t}] for t in texts] if is_chat(prompts[0]) else texts
    ids = [row[:n] for row, n in zip(rollout.completion_ids.tolist(), rollout.lengths.tolist(), strict=True)]
    columns = {k: [row[k] for row in rows for _ in range(g)] for k in rows[0] if k != "prompt"}
    scores = scorer([p for p in prompts for _ in range(g)], completions, columns | {"completion_ids": ids},
                    group_size=g, context=context)
    return scores.to(rollout.completion_ids.device)


@dataclass(frozen=True, eq=False)
class StepData:
    """This process's groups of one step, on the training device.

    ``groups.mask`` already leaves out what drop-mode filters removed; ``keep`` holds every
    filter's keep mask (zero-mode filters act on the advantages).
    """

    rollout: Rollout
    groups: Groups
    keep: list[Tensor]
    metrics: dict[str, float]

    def select(self, prompts: Tensor) -> "StepData":
        g = self.groups
        groups = Groups(
            g.rewards[prompts], g.lengths[prompts], mask=g.mask[prompts],
            correct=None if g.correct is None else g.correct[prompts],
            greedy_rewards=None if g.greedy_rewards is None else g.greedy_rewards[prompts],
        )
        return StepData(select_groups(self.rollout, prompts), groups, [k[prompts] for k in self.keep], self.metrics)


def concat(pieces: list[StepData], pad_token_id: int) -> StepData:
    """The groups of several rounds as one step (the metrics of the first piece)."""
    if len(pieces) == 1:
        return pieces[0]

    def join(name: str) -> Tensor | None:
        values = [getattr(p.groups, name) for p in pieces]
        return None if values[0] is None else torch.cat(values)

    groups = Groups(join("rewards"), join("lengths"), mask=join("mask"), correct=join("correct"),
                    greedy_rewards=join("greedy_rewards"))
    keep = [torch.cat(ks) for ks in zip(*(p.keep for p in pieces), strict=True)]
    return StepData(concat_rollouts([p.rollout for p in pieces], pad_token_id), groups, keep, pieces[0].metrics)


class Collector:
    """Generates and scores until this process has its groups.

    Groups that drop-mode filters remove entirely are replaced by fresh prompts for up to
    ``parts.refill_rounds`` extra rounds (DAPO's dynamic sampling); the rounds are synchronised
    across processes, and a process that is full keeps reading prompts (so every process's data
    position stays the same) without generating. The first round is always kept whole, so a step
    whose groups are all filtered out is a logged no-op.

    Prompts are encoded once (chat prompts through the tokenizer's template, ``max_prompt_length``
    keeping the last tokens); with ``mask_truncated_completions`` a completion without EOS is
    invalid (no loss, no baseline); an estimator that needs a greedy baseline (ReMax) gets one
    greedy completion per prompt, scored like the others (an unscored one counts 0).

    Args:
        eos: every token id that ends a completion.
        max_positions: the model's positions; a longer prompt is refused.
        reward_kl: per-completion KL of the policy from the reference (``[n * g]``), subtracted from
            the rewards with the recipe's ``reward_kl_coef``; None when the recipe has no reward KL.
    """

    def __init__(
        self,
        *,
        generator: Generator,
        scorer: Scorer,
        parts: Parts,
        tokenizer: PreTrainedTokenizerBase,
        sampler: PromptSampler,
        processes: Processes,
        config: TrainConfig,
        eos: tuple[int, ...],
        max_positions: int | None,
        reward_kl: Callable[[Rollout], Tensor] | None,
    ) -> None:
        self.generator, self.scorer, self.parts, self.tokenizer = generator, scorer, parts, tokenizer
        self.sampler, self.processes, self.config, self.reward_kl = sampler, processes, config, reward_kl
        self.eos, self.max_positions = eos, max_positions
        self._warned_truncation = False

    def __call__(self, model: torch.nn.Module, timer: Timer, step: int) -> StepData:
        per_process = self.config.prompts_per_step // self.processes.world
        refill = self.parts.refill_rounds
        pieces: list[StepData] = []
        rounds: list[dict[str, float]] = []
        have = 0
        for round_index in range(refill + 1):
            if round_index and self.processes.all(have >= per_process):
                break
            rows = self.sampler.next(self.config.prompts_per_step)
            if have >= per_process:
                continue  # this process is full; the others refill
            data, live = self._round(model, rows, timer, step)
            rounds.append(data.metrics)
            if round_index == 0:
                have = int(live.sum())
                pieces.append(data.select(live.nonzero().squeeze(1)) if refill and have < per_process else data)
                continue
            take = live.nonzero().squeeze(1)[: per_process - have]
            pieces.append(data.select(take))
            have += take.numel()
        if refill and have < per_process:
            logger.warning(
                "step %d: only %d of %d groups survived the filters after %d refill rounds; training on those "
                "(raise the recipe's refill_rounds, e.g. --set refill_rounds=%d)",
                step + 1, have, per_process, refill, 2 * refill,
            )
        data = concat(pieces, self.tokenizer.pad_token_id)
        mask = data.groups.mask
        for f, k in zip(self.parts.filters, data.keep, strict=True):
            if f.mode == "drop":
                mask = mask & k
        metrics = mean_over_rounds(rounds) | {"groups/rounds": float(len(rounds))}
        return StepData(data.rollout, data.groups.replace(mask=mask), data.keep, metrics)

    def _round(
        self, model: torch.nn.Module, rows: list[dict[str, Any]], timer: Timer, step: int
    ) -> tuple[StepData, Tensor]:
        """One round of generation and scoring; also which groups survive the drop-mode filters."""
        cfg, g = self.config, self.config.group_size
        prompts = [row["prompt"] for row in rows]
        with timer("generate"):
            encoded = self._encode(prompts)
            rollout = self.generator(
                model, self.tokenizer, encoded, group_size=g, max_new_tokens=cfg.max_completion_length,
                temperature=cfg.temperature, top_p=cfg.top_p,
            )
            greedy = None
            if self.parts.needs_greedy_baseline:
                greedy = self.generator(model, self.tokenizer, encoded, group_size=1,
                                        max_new_tokens=cfg.max_completion_length, temperature=0.0, top_p=1.0)
        with timer("score"):
            position = self.sampler.position / len(self.sampler.dataset)
            context = reward_context(TrainerState(step, cfg.steps, position))
            scores = score_rollout(self.scorer, prompts, rows, rollout, context)
            rewards, valid = scores.rewards, scores.valid
            if cfg.mask_truncated_completions:
                valid = valid & ~rollout.truncated.view_as(valid)
            if self.reward_kl is not None:
                rewards = rewards - self.parts.reward_kl_coef * self.reward_kl(rollout).view_as(rewards)
            baseline = None
            if greedy is not None:
                best = score_rollout(self.scorer, prompts, rows, greedy, context)
                baseline = best.rewards.where(best.valid, 0.0).view(-1)
            groups = Groups(rewards, rollout.lengths.view(-1, g), mask=valid, correct=scores.correct,
                            greedy_rewards=baseline)
            for shaper in self.parts.shapers:
                groups = shaper(groups)
            keep = [f(groups) for f in self.parts.filters]
        drop = [k for f, k in zip(self.parts.filters, keep, strict=True) if f.mode == "drop"]
        live = torch.stack(drop).all(0).any(1) if drop else groups.mask.any(1)
        metrics = round_metrics(scores, groups, rollout, live) | {"prompts/truncated_frac": float(encoded.truncated.float().mean())}
        return StepData(rollout, groups, keep, metrics), live

    def _encode(self, prompts: list[Any]) -> Prompts:
        encoded = encode_prompts(self.tokenizer, prompts, self.processes.device, eos=self.eos,
                                 max_length=self.config.max_prompt_length, max_positions=self.max_positions)
        if bool(encoded.truncated.any()) and not self._warned_truncation:
            self._warned_truncation = True
            logger.warning(
                "prompts longer than max_prompt_length=%d tokens keep their last %d (counted in "
                "prompts/truncated_frac; warned once)", self.config.max_prompt_length, self.config.max_prompt_length,
            )
        return encoded
