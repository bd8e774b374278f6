"""What every rollout engine shares: the Rollout value, the Generator protocol, prompt and EOS handling."""

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from jaxtyping import Bool, Int
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlzoo.errors import ConfigError


@dataclass(frozen=True, eq=False)
class Rollout:
    """Prompts and their sampled completions, prompt-major (completion j of prompt i is row i*g + j).

    Prompts are left-padded, completions right-padded; EOS is part of a completion, padding is not.
    """

    prompt_ids: Int[Tensor, "n p"]
    prompt_mask: Bool[Tensor, "n p"]
    completion_ids: Int[Tensor, "m t"]
    completion_mask: Bool[Tensor, "m t"]
    truncated: Bool[Tensor, " m"]
    texts: list[str]

    @property
    def group_size(self) -> int:
        return self.completion_ids.shape[0] // self.prompt_ids.shape[0]

    @property
    def lengths(self) -> Int[Tensor, " m"]:
        return self.completion_mask.sum(1)


def tokenize_prompts(
    tokenizer: PreTrainedTokenizerBase, prompts: list[str], device: torch.device
) -> tuple[Int[Tensor, "n p"], Bool[Tensor, "n p"]]:
    """Left-padded prompt ids and mask, with the tokenizer's own special tokens (e.g. BOS)."""
    if tokenizer.pad_token_id is None:
        raise ConfigError(
            "tokenizer has no pad token; set one (e.g. tokenizer.pad_token = tokenizer.eos_token)"
        )
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = side
    return enc["input_ids"].to(device), enc["attention_mask"].to(device).bool()


def completion_mask(completion_ids: Int[Tensor, "m t"], eos_token_id: int) -> Bool[Tensor, "m t"]:
    """True up to and including the first EOS of each row (the whole row when there is none)."""
    is_eos = completion_ids == eos_token_id
    eos_before = is_eos.cumsum(1) - is_eos.long()
    return eos_before == 0


@runtime_checkable
class Generator(Protocol):
    """Samples ``group_size`` completions for each prompt; any inference engine can sit behind it."""

    def __call__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompts: list[str],
        *,
        group_size: int,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
    ) -> Rollout: ...


def rollout_from_ids(
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: Int[Tensor, "n p"],
    prompt_mask: Bool[Tensor, "n p"],
    completion_ids: Int[Tensor, "m t"],
) -> Rollout:
    """Build a Rollout from raw completion ids (anything after the first EOS becomes padding)."""
    if completion_ids.shape[1] == 0:
        completion_ids = torch.full(
            (completion_ids.shape[0], 1), tokenizer.eos_token_id, device=completion_ids.device
        )
    mask = completion_mask(completion_ids, tokenizer.eos_token_id)
    ids = torch.where(mask, completion_ids, tokenizer.pad_token_id)
    truncated = ~(ids == tokenizer.eos_token_id).any(1)
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    return Rollout(prompt_ids, prompt_mask, ids, mask, truncated, texts)


def _pad_to(x: Tensor, width: int, value: int | bool, left: bool) -> Tensor:
    extra = width - x.shape[1]
    if extra == 0:
        return x
    pad = torch.full((x.shape[0], extra), value, dtype=x.dtype, device=x.device)
    return torch.cat([pad, x] if left else [x, pad], 1)


def select_groups(rollout: Rollout, groups: Int[Tensor, " k"]) -> Rollout:
    """The rollout of some prompts only (all their completions)."""
    g = rollout.group_size
    rows = (groups[:, None] * g + torch.arange(g, device=groups.device)).reshape(-1)
    return Rollout(
        rollout.prompt_ids[groups],
        rollout.prompt_mask[groups],
        rollout.completion_ids[rows],
        rollout.completion_mask[rows],
        rollout.truncated[rows],
        [rollout.texts[i] for i in rows.tolist()],
    )


def concat_rollouts(rollouts: list[Rollout], pad_token_id: int) -> Rollout:
    """Join rollouts prompt-wise, padding prompts on the left and completions on the right."""
    if len(rollouts) == 1:
        return rollouts[0]
    p = max(r.prompt_ids.shape[1] for r in rollouts)
    t = max(r.completion_ids.shape[1] for r in rollouts)
    return Rollout(
        torch.cat([_pad_to(r.prompt_ids, p, pad_token_id, True) for r in rollouts]),
        torch.cat([_pad_to(r.prompt_mask, p, False, True) for r in rollouts]),
        torch.cat([_pad_to(r.completion_ids, t, pad_token_id, False) for r in rollouts]),
        torch.cat([_pad_to(r.completion_mask, t, False, False) for r in rollouts]),
        torch.cat([r.truncated for r in rollouts]),
        [text for r in rollouts for text in r.texts],
    )
