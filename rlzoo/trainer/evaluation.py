"""Held-out evaluation: the one implementation, used by the trainer and by the embedded task.

Prompts are sharded over the processes (each generates for its own contiguous share) and the sums
are all-reduced, so every process returns the same figures for the whole set. Sampling draws from
its own seeded random stream (``seed`` plus the rank): evaluating never changes what training
samples next, so resumed runs stay exact.
"""

from collections.abc import Sequence
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from rlzoo.errors import ConfigError
from rlzoo.rewards import Scorer
from rlzoo.trainer.collect import reward_context, score_rollout
from rlzoo.trainer.distributed import Processes
from rlzoo.trainer.engines import Generator
from rlzoo.trainer.engines.base import encode_prompts, eos_token_ids

_SUMS = ("reward", "length", "truncated", "correct", "all_correct", "all_wrong", "mixed", "completions", "groups")


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[dict[str, Any]],
    *,
    scorer: Scorer,
    generator: Generator,
    greedy: bool = True,
    num_samples: int = 1,
    max_new_tokens: int = 96,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 512,
    seed: int | None = 0,
    processes: Processes | None = None,
    eos: tuple[int, ...] | None = None,
    max_prompt_length: int | None = None,
) -> dict[str, float]:
    """Mean reward, accuracy and completion length of ``model`` on ``rows`` (dicts with a ``prompt``).

    Returns ``reward`` (mean over completions, unscored ones counting 0), ``length`` (tokens, EOS
    included), ``truncated`` (fraction without EOS within ``max_new_tokens``) and, where the scorer
    knows correctness, ``accuracy`` and the fractions of prompts whose ``num_samples``
    completions are ``all_correct``, ``all_wrong`` or ``mixed``. ``batch_size`` bounds the
    completions per generator call; ``seed=None`` samples from the caller's random stream. The
    model's train/eval mode is restored afterwards. Prompts are encoded and completions scored as
    in training (chat templates, TRL's reward-function arguments); ``eos`` defaults to the
    tokenizer's and the model's generation config's EOS tokens.
    """
    if greedy and num_samples != 1:
        raise ConfigError(f"evaluate: greedy decoding gives one completion per prompt, got num_samples={num_samples}")
    if num_samples < 1 or batch_size < 1 or max_new_tokens < 1 or not temperature > 0:
        raise ConfigError(
            "evaluate: need num_samples, batch_size, max_new_tokens >= 1 and temperature > 0, got "
            f"{num_samples}, {batch_size}, {max_new_tokens}, {temperature}"
        )
    if not len(rows):
        raise ConfigError("evaluate: no rows; pass at least one {'prompt': ...} row")
    rank, world = (0, 1) if processes is None else (processes.rank, processes.world)
    share = -(-len(rows) // world)
    mine = [rows[i] for i in range(rank * share, min(len(rows), (rank + 1) * share))]
    device = next(model.parameters()).device
    eos = eos or eos_token_ids(tokenizer, model)
    positions = getattr(model.config, "max_position_embeddings", None)
    sums = torch.zeros(len(_SUMS), dtype=torch.float64, device=device)
    knows_correct = False
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed + rank)
        per_call = max(1, batch_size // num_samples)
        for start in range(0, len(mine), per_call):
            batch = mine[start : start + per_call]
            prompts = [r["prompt"] for r in batch]
            encoded = encode_prompts(tokenizer, prompts, device, eos=eos, max_length=max_prompt_length,
                                     max_positions=positions)
            rollout = generator(
                model, tokenizer, encoded, group_size=num_samples,
                max_new_tokens=max_new_tokens, temperature=0.0 if greedy else temperature, top_p=top_p,
            )
            scores = score_rollout(scorer, prompts, batch, rollout, reward_context(None))
            part = {
                "reward": scores.rewards.where(scores.valid, 0.0).sum(),
                "length": rollout.lengths.sum(),
                "truncated": rollout.truncated.sum(),
                "completions": rollout.lengths.numel(),
                "groups": len(batch),
            }
            if scores.correct is not None:
                knows_correct = True
                c = scores.correct
                part |= {"correct": c.sum(), "all_correct": c.all(1).sum(), "all_wrong": (~c).all(1).sum(),
                         "mixed": (c.any(1) & ~c.all(1)).sum()}
            sums += torch.tensor([float(part.get(k, 0)) for k in _SUMS], dtype=torch.float64, device=device)
    model.train(was_training)
    if processes is not None:
        sums = processes.sum(sums)
        knows_correct = processes.any(knows_correct)
    total = dict(zip(_SUMS, sums.tolist(), strict=True))
    out = {k: total[k] / total["completions"] for k in ("reward", "length", "truncated")}
    if knows_correct:
        out["accuracy"] = total["correct"] / total["completions"]
        out |= {k: total[k] / total["groups"] for k in ("all_correct", "all_wrong", "mixed")}
    return out
