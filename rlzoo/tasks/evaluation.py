"""Held-out evaluation of a causal LM on a prompt/answer task, with the trainer's generators."""

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from jaxtyping import Bool, Int
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlzoo.errors import ConfigError
from rlzoo.tasks.arithmetic import arithmetic_correct
from rlzoo.trainer.rollout import Generator, HFGenerator

__all__ = ["evaluate", "generate_completions"]


def generate_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    greedy: bool = True,
    num_samples: int = 1,
    max_new_tokens: int = 96,
    temperature: float = 1.0,
    batch_size: int = 512,
    generator: Generator | None = None,
) -> tuple[list[str], Int[Tensor, " b"], Bool[Tensor, " b"]]:
    """``num_samples`` completions per prompt (prompt-major), their token lengths and EOS flags.

    Runs the trainer's generator (:class:`~rlzoo.trainer.rollout.HFGenerator` unless one is given)
    over batches of at most ``batch_size`` completions. Sampling is pure temperature sampling (no
    top-k, no top-p). Texts are decoded without special tokens; lengths count EOS. Uses the
    caller's torch RNG.
    """
    if greedy and num_samples != 1:
        raise ConfigError(
            f"evaluate: greedy decoding gives one completion per prompt, got num_samples={num_samples}"
        )
    if num_samples < 1 or batch_size < 1 or max_new_tokens < 1 or not temperature > 0:
        raise ConfigError(
            f"evaluate: need num_samples, batch_size, max_new_tokens >= 1 and temperature > 0, got "
            f"{num_samples}, {batch_size}, {max_new_tokens}, {temperature}"
        )
    generate = generator or HFGenerator()
    per_batch = max(1, batch_size // num_samples)
    texts: list[str] = []
    lengths, finished = [], []
    for start in range(0, len(prompts), per_batch):
        rollout = generate(
            model, tokenizer, list(prompts[start : start + per_batch]), group_size=num_samples,
            max_new_tokens=max_new_tokens, temperature=0.0 if greedy else temperature, top_p=1.0,
        )
        texts += rollout.texts
        lengths.append(rollout.lengths.cpu())
        finished.append(~rollout.truncated.cpu())
    return texts, torch.cat(lengths), torch.cat(finished)


def evaluate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Iterable[Mapping[str, str]],
    *,
    greedy: bool = True,
    num_samples: int = 1,
    max_new_tokens: int = 96,
    temperature: float = 1.0,
    batch_size: int = 512,
    seed: int | None = 0,
    reward: Callable[..., list[float]] = arithmetic_correct,
) -> dict[str, float]:
    """Accuracy and length of ``model`` on ``examples`` (rows with a ``prompt`` and the reward's columns).

    Returns ``accuracy`` (mean reward over every completion), ``mean_length`` (tokens, EOS
    included), ``truncated`` (fraction without EOS within ``max_new_tokens``) and, over the groups
    of ``num_samples`` completions of one prompt, the fractions ``all_correct``, ``all_wrong`` and
    ``mixed`` (reward 1.0 counts as correct). ``seed`` seeds sampling without disturbing the
    caller's RNG; ``None`` uses it as it is. The model's train/eval mode is restored afterwards.
    """
    rows = list(examples)
    if not rows:
        raise ConfigError("evaluate: examples is empty; pass at least one {'prompt': ..., 'answer': ...} row")
    prompts = [row["prompt"] for row in rows]
    columns = {
        key: [row[key] for row in rows for _ in range(num_samples)] for key in rows[0] if key != "prompt"
    }
    was_training = model.training
    model.eval()
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        texts, lengths, finished = generate_completions(
            model,
            tokenizer,
            prompts,
            greedy=greedy,
            num_samples=num_samples,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            batch_size=batch_size,
        )
    model.train(was_training)
    repeated = [p for p in prompts for _ in range(num_samples)]
    scores = torch.tensor(reward(prompts=repeated, completions=texts, **columns), dtype=torch.float64)
    correct = (scores == 1.0).view(len(rows), num_samples)
    return {
        "accuracy": scores.mean().item(),
        "mean_length": lengths.double().mean().item(),
        "truncated": 1.0 - finished.double().mean().item(),
        "all_correct": correct.all(1).double().mean().item(),
        "all_wrong": (~correct).all(1).double().mean().item(),
        "mixed": (correct.any(1) & ~correct.all(1)).double().mean().item(),
    }
