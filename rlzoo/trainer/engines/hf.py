"""Hugging Face ``generate``: the engine for any causal LM."""

from dataclasses import dataclass

import torch
from transformers import GenerationConfig, PreTrainedTokenizerBase

from rlzoo.trainer.engines.base import Prompts, Rollout, rollout_from_ids


@dataclass(frozen=True)
class HFGenerator:
    """Hugging Face ``generate`` with a KV cache, full-vocabulary sampling (top_k off) at the given temperature."""

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
    ) -> Rollout:
        sample = temperature > 0
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            temperature=temperature if sample else None,
            top_p=top_p if sample else None,
            top_k=0 if sample else None,
            num_return_sequences=group_size,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=list(prompts.eos_token_ids),
            bos_token_id=tokenizer.bos_token_id,
        )
        was_training = model.training
        model.eval()
        with torch.no_grad():
            out = model.generate(input_ids=prompts.ids, attention_mask=prompts.mask, generation_config=config,
                                 synced_gpus=False)
        model.train(was_training)
        return rollout_from_ids(tokenizer, prompts, out[:, prompts.ids.shape[1] :])
