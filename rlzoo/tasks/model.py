"""The embedded tokenizer (one token per character) and the tiny Llama-style model.

Everything is built locally: the tokenizer from the task's alphabet with the ``tokenizers``
library, the model from a config. :func:`load_model` reads the shipped warm start from
``rlzoo/tasks/assets`` (or any directory the warm-start script wrote) without touching a hub.
"""

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

__all__ = ["ALPHABET", "ASSETS", "SPECIAL_TOKENS", "build_tokenizer", "load_model", "new_model"]

ASSETS = Path(__file__).with_name("assets")
SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>"}
ALPHABET = "0123456789+=;# chkos"  # every character the task writes
MAX_POSITIONS = 128  # BOS + 9 prompt characters + completions up to 96 tokens fit with room to spare


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer over :data:`ALPHABET` (24 ids), BOS prepended, left padding.

    Implementation details:

    1. ``WordLevel`` over single characters after a ``Split("", "isolated")`` pre-tokenizer: one
       token per character, the space included; a character outside the alphabet becomes ``<unk>``.
    2. The decoder is ``decoders.Fuse()``: without it decoding puts a space between tokens
       ("140" -> "1 4 0") and every string-matching reward silently fails.
    3. ``<bos>`` is prepended to every encoded text (like Llama tokenizers); encode completions with
       ``add_special_tokens=False``. ``<eos>`` ends a completion and is not added on encode.
    4. ``padding_side="left"`` so batched generation continues every row from its last prompt token.
    """
    specials = list(SPECIAL_TOKENS.values())
    vocab = {token: i for i, token in enumerate([*specials, *ALPHABET])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.decoder = decoders.Fuse()
    bos = SPECIAL_TOKENS["bos_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, vocab[bos])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, padding_side="left", model_max_length=MAX_POSITIONS, **SPECIAL_TOKENS
    )


def new_model(
    tokenizer: PreTrainedTokenizerFast,
    *,
    hidden_size: int = 64,
    num_hidden_layers: int = 8,
    num_attention_heads: int = 4,
    intermediate_size: int = 256,
) -> LlamaForCausalLM:
    """A freshly initialised Llama-style causal LM with tied embeddings (0.53 M parameters by default)."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def load_model(
    path: str | Path | None = None, device: str | torch.device | None = None, *, weights: str | Path | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """The warm-started model and its tokenizer, offline; ``path=None`` reads the shipped assets.

    ``weights``: a safetensors file of the same architecture whose tensors replace the loaded ones
    (the second task ships only its weights, ``assets/chain4.safetensors``; the tied output layer
    may be absent). The model is in eval mode, float32, on ``device`` (default: CPU).
    """
    where = ASSETS if path is None else Path(path)
    tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=True)
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a weight-loading bar for a model that loads in milliseconds is noise
    try:
        model = AutoModelForCausalLM.from_pretrained(where, local_files_only=True, dtype=torch.float32)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    if weights is not None:
        from safetensors.torch import load_file

        missing, unexpected = model.load_state_dict(load_file(str(weights)), strict=False)
        tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
        if unexpected or set(missing) - tied:
            raise ValueError(f"{weights}: not this architecture's weights (missing {sorted(set(missing) - tied)}, "
                             f"unexpected {sorted(unexpected)})")
    return model.to(device or "cpu").eval(), tokenizer
