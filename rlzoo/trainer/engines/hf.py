"""Hugging Face ``generate``: the engine for any causal LM."""

from dataclasses import dataclass

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from rlzoo.trainer.engines.base import Rollout, rollout_from_ids, tokenize_prompts


@dataclass(frozen=True)
class HFGenerator:
    """Hugging Face ``generate`` with a KV cache, full-vocabulary sampling (top_k off) at the given temperature."""

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
    ) -> Rollout:
        device = next(model.parameters()).device
        prompt_ids, prompt_mask = tokenize_prompts(tokenizer, prompts, device)
        sample = temperature > 0
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            temperature=temperature if sample else None,
            top_p=top_p if sample else None,
            top_k=0 if sample else None,
            num_return_sequences=group_size,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
        )
        was_training = model.training
        model.eval()
        with torch.no_grad():
            out = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=config)
        model.train(was_training)
        return rollout_from_ids(tokenizer, prompt_ids, prompt_mask, out[:, prompt_ids.shape[1] :])
