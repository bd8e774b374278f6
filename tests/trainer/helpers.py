"""Tiny models, data and a scripted generator shared by the trainer tests (nothing downloads)."""

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlzoo.tasks import arithmetic_correct, build_tokenizer, make_split, new_model
from rlzoo.trainer import Rollout, TrainConfig
from rlzoo.trainer.engines.base import rollout_from_ids


def tiny(seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A 2-layer model built from a config (random weights, seeded) and the local tokenizer."""
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    return new_model(tokenizer, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64), tokenizer


def rows(n: int = 8, seed: int = 0) -> list[dict[str, str]]:
    return make_split("train", n, seed)


def config(tmp_path, **changes) -> TrainConfig:
    base = {
        "steps": 2,
        "prompts_per_step": 4,
        "group_size": 4,
        "max_completion_length": 12,
        "learning_rate": 1e-3,
        "micro_batch_size": 16,
        "output_dir": str(tmp_path / "run"),
        "progress": False,
        "save_every": 0,
    }
    return TrainConfig.from_dict(base | changes)


@dataclass(frozen=True)
class ScriptedGenerator:
    """Deterministic completions: for prompt a+b+c= completion j answers a+b+c+j-1 (j=1 is right),
    with j extra ';' steps, so groups are mixed and lengths differ. Ignores the model."""

    def __call__(self, model, tokenizer, prompts, *, group_size, max_new_tokens, temperature, top_p) -> Rollout:
        texts = []
        for p in tokenizer.batch_decode(prompts.ids, skip_special_tokens=True):
            total = sum(int(x) for x in p.rstrip("=").split("+"))
            texts += [";" * j + f"#{total + j - 1}" for j in range(group_size)]
        enc = tokenizer(texts, add_special_tokens=False)["input_ids"]
        width = min(max_new_tokens, max(len(e) for e in enc) + 1)
        ids = torch.full((len(texts), width), tokenizer.pad_token_id, device=prompts.ids.device)
        for i, e in enumerate(enc):
            row = [*e, tokenizer.eos_token_id][:width]
            ids[i, : len(row)] = torch.tensor(row, device=prompts.ids.device)
        return rollout_from_ids(tokenizer, prompts, ids)


REWARDS = (arithmetic_correct,)
