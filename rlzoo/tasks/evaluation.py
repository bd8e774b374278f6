"""Held-out evaluation of a causal LM on a prompt/answer task with Hugging Face ``generate``."""

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from jaxtyping import Bool, Int
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlzoo.errors import ConfigError
from rlzoo.tasks.arithmetic import arithmetic_correct

__all__ = ["completion_lengths", "evaluate", "generate_completions"]


def completion_lengths(ids: Int[Tensor, "b t"], eos_token_id: int) -> Int[Tensor, " b"]:
    """Tokens up to and including the first EOS; all ``t`` where a row has no EOS (truncated)."""
    is_eos = ids == eos_token_id
    first = is_eos.int().argmax(1)
    return torch.where(is_eos.any(1), first + 1, ids.shape[1])


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
) -> tuple[list[str], Int[Tensor, " b"], Bool[Tensor, " b"]]:
    """``num_samples`` completions per prompt (prompt-major), their token lengths and EOS flags.

    Sampling is pure temperature sampling (no top-k, no top-p). Texts are decoded without special
    tokens; lengths count EOS. Uses the caller's torch RNG.
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
    sampling = {} if greedy else {"temperature": temperature, "top_k": 0, "top_p": 1.0}
    per_batch = max(1, batch_size // num_samples)
    texts: list[str] = []
    lengths, finished = [], []
    for start in range(0, len(prompts), per_batch):
        enc = tokenizer(list(prompts[start : start + per_batch]), padding=True, return_tensors="pt").to(
            model.device
        )
        out = model.generate(
            **enc,
            do_sample=not greedy,
            num_return_sequences=num_samples,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **sampling,
        )
        ids = out[:, enc["input_ids"].shape[1] :].cpu()
        texts += tokenizer.batch_decode(ids, skip_special_tokens=True)
        lengths.append(completion_lengths(ids, tokenizer.eos_token_id))
        finished.append((ids == tokenizer.eos_token_id).any(1))
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
