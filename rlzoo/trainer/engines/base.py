"""What every rollout engine shares: the Rollout value, the Generator protocol, prompt and EOS handling."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from rlzoo.errors import ConfigError, DataError
from rlzoo.text import is_chat


@dataclass(frozen=True, eq=False)
class Rollout:
    """Prompts and their sampled completions, prompt-major (completion j of prompt i is row i*g + j).

    Prompts are left-padded, completions right-padded; EOS is part of a completion, padding is not.
    ``rollout_logp`` holds the log-probs the engine sampled each token with, where it reports them
    (vLLM; 0 at padding), else None.
    """

    prompt_ids: Int[Tensor, "n p"]
    prompt_mask: Bool[Tensor, "n p"]
    completion_ids: Int[Tensor, "m t"]
    completion_mask: Bool[Tensor, "m t"]
    truncated: Bool[Tensor, " m"]
    texts: list[str]
    rollout_logp: Float[Tensor, "m t"] | None = None

    @property
    def group_size(self) -> int:
        return self.completion_ids.shape[0] // self.prompt_ids.shape[0]

    @property
    def lengths(self) -> Int[Tensor, " m"]:
        return self.completion_mask.sum(1)


@dataclass(frozen=True, eq=False)
class Prompts:
    """Encoded prompts, left-padded, and the token ids that end a completion (EOS, possibly several).

    ``truncated`` marks the prompts that lost their first tokens to ``max_length``.
    """

    ids: Int[Tensor, "n p"]
    mask: Bool[Tensor, "n p"]
    truncated: Bool[Tensor, " n"]
    eos_token_ids: tuple[int, ...]


def eos_token_ids(tokenizer: PreTrainedTokenizerBase, model: torch.nn.Module | None = None) -> tuple[int, ...]:
    """Every token that ends a completion: the tokenizer's EOS and those of the model's generation
    config (Qwen's lists two), the tokenizer's first."""
    ids = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    config = getattr(model, "generation_config", None)
    extra = getattr(config, "eos_token_id", None)
    ids += extra if isinstance(extra, list) else [] if extra is None else [extra]
    if not ids:
        raise ConfigError("tokenizer has no eos_token and the model's generation config names none; set one")
    return tuple(dict.fromkeys(int(i) for i in ids))


def encode_prompts(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str | list[dict[str, str]]],
    device: torch.device,
    *,
    eos: tuple[int, ...] | None = None,
    max_length: int | None = None,
    max_positions: int | None = None,
) -> Prompts:
    """Text or chat prompts as left-padded ids (the trainer's one tokenisation of prompts).

    A prompt that is a list of ``{"role", "content"}`` messages is rendered with the tokenizer's
    chat template (``add_generation_prompt=True``) and tokenised without adding special tokens
    (the template writes them), as TRL does; a string is tokenised with the tokenizer's own
    special tokens (e.g. BOS). A prompt longer than ``max_length`` tokens keeps its last
    ``max_length``; one longer than ``max_positions`` (the model's) is a DataError.
    """
    if tokenizer.pad_token_id is None:
        raise ConfigError("tokenizer has no pad token; set one (e.g. tokenizer.pad_token = tokenizer.eos_token)")
    chat = [is_chat(p) for p in prompts]
    if any(chat) and not all(chat):
        raise DataError("prompts: a batch mixes chat prompts (lists of messages) and plain strings; use one form")
    if chat and chat[0]:
        texts = [tokenizer.apply_chat_template(list(p), tokenize=False, add_generation_prompt=True) for p in prompts]
    else:
        texts = list(prompts)
    encoded = tokenizer(texts, add_special_tokens=not (chat and chat[0]))["input_ids"]
    cut = [max_length is not None and len(e) > max_length for e in encoded]
    encoded = [e[-max_length:] if c else e for e, c in zip(encoded, cut, strict=True)]
    for i, e in enumerate(encoded):
        if max_positions is not None and len(e) > max_positions:
            raise DataError(
                f"prompt {i} of this batch ({texts[i][:60]!r}...) has {len(e)} tokens, more than the model's "
                f"{max_positions} positions; set max_prompt_length (it keeps the last tokens)"
            )
    width = max(len(e) for e in encoded)
    ids = torch.full((len(encoded), width), tokenizer.pad_token_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(encoded), width), dtype=torch.bool, device=device)
    for i, e in enumerate(encoded):
        if e:
            ids[i, width - len(e) :] = torch.tensor(e, dtype=torch.long, device=device)
            mask[i, width - len(e) :] = True
    truncated = torch.tensor(cut, dtype=torch.bool, device=device)
    return Prompts(ids, mask, truncated, eos if eos is not None else eos_token_ids(tokenizer))


def completion_mask(completion_ids: Int[Tensor, "m t"], eos: tuple[int, ...]) -> Bool[Tensor, "m t"]:
    """True up to and including the first EOS (any of ``eos``) of each row (the whole row when there is none)."""
    is_eos = torch.isin(completion_ids, torch.tensor(eos, device=completion_ids.device))
    eos_before = is_eos.cumsum(1) - is_eos.long()
    return eos_before == 0


@runtime_checkable
class Generator(Protocol):
    """Samples ``group_size`` completions for each prompt; any inference engine can sit behind it."""

    def __call__(
        self,
        model: torch.nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        prompts: Prompts,
        *,
        group_size: int,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
    ) -> Rollout: ...


def rollout_from_ids(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Prompts,
    completion_ids: Int[Tensor, "m t"],
    rollout_logp: Float[Tensor, "m t"] | None = None,
) -> Rollout:
    """Build a Rollout from raw completion ids (anything after the first EOS becomes padding)."""
    if completion_ids.shape[1] == 0:
        completion_ids = torch.full(
            (completion_ids.shape[0], 1), prompts.eos_token_ids[0], device=completion_ids.device
        )
        rollout_logp = None if rollout_logp is None else rollout_logp.new_zeros(completion_ids.shape)
    mask = completion_mask(completion_ids, prompts.eos_token_ids)
    ids = torch.where(mask, completion_ids, tokenizer.pad_token_id)
    truncated = ~torch.isin(ids, torch.tensor(prompts.eos_token_ids, device=ids.device)).any(1)
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    logp = None if rollout_logp is None else torch.where(mask, rollout_logp, 0.0)
    return Rollout(prompts.ids, prompts.mask, ids, mask, truncated, texts, logp)


def _pad_to(x: Tensor, width: int, value: float | int | bool, left: bool) -> Tensor:
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
        None if rollout.rollout_logp is None else rollout.rollout_logp[rows],
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
        None if rollouts[0].rollout_logp is None
        else torch.cat([_pad_to(r.rollout_logp, t, 0.0, False) for r in rollouts]),  # type: ignore[arg-type]
    )


def adapted_linear(module: torch.nn.Module) -> tuple[Tensor, Tensor | None]:
    """The weight and bias a linear layer applies: a LoRA layer's base weight plus its active adapters'
    deltas (unless they are disabled or merged), so an engine samples from the adapted model."""
    base = getattr(module, "base_layer", None)
    if base is None:
        return module.weight, module.bias
    weight = base.weight
    if not getattr(module, "disable_adapters", False) and not getattr(module, "merged", False):
        for name in module.active_adapters:
            if name in module.lora_A:
                weight = weight + module.get_delta_weight(name)
    return weight, base.bias
