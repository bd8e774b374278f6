"""A tiny Llama, prompts, a reward that varies with the sampled text, and a config: shared by the CUDA tests
and the DDP worker (kept here, not in tests/trainer, so this folder stands on rlzoo's public API alone)."""

import math
from typing import Any

import torch

from rlzoo.tasks import build_tokenizer, make_split, new_model
from rlzoo.trainer import TrainConfig


def tiny(seed: int = 0) -> tuple[Any, Any]:
    """A 2-layer Llama built from a config (random weights, seeded) and the local character tokenizer."""
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    model = new_model(tokenizer, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    return model, tokenizer


def rows(n: int = 16, seed: int = 0) -> list[dict[str, str]]:
    return make_split("train", n, seed)


def even_length(prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
    """1 for a completion of even length: a random model gets mixed groups (the arithmetic reward would
    be 0 everywhere, so every advantage would be 0 and nothing would be learned)."""
    return [float(len(c) % 2 == 0) for c in completions]


even_length.verifies_correctness = True  # recipes that need a verdict (reinforce_rej, agpo) get one

REWARDS = (even_length,)


def config(output_dir: str, **changes: Any) -> TrainConfig:
    """Two small steps in bf16 (real generation: the default Hugging Face ``generate``)."""
    base = {
        "steps": 2,
        "prompts_per_step": 4,
        "group_size": 4,
        "max_completion_length": 12,
        "learning_rate": 1e-3,
        "micro_batch_size": 16,
        "mixed_precision": "bf16",
        "output_dir": output_dir,
        "progress": False,
        "save_every": 0,
    }
    return TrainConfig.from_dict(base | changes)


def snapshot(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().to("cpu", copy=True) for p in model.parameters()]


def changed(before: list[torch.Tensor], model: torch.nn.Module) -> bool:
    return any(not torch.equal(a, p.detach().cpu()) for a, p in zip(before, model.parameters(), strict=True))


def bad_metrics(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Metrics that are not finite floats (``step`` aside), by ``step/name``."""
    return {
        f"{h['step']}/{k}": v
        for h in history
        for k, v in h.items()
        if k != "step" and not (isinstance(v, float) and math.isfinite(v))
    }
