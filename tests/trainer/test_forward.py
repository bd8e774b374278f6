"""Log-probs from the final hidden states equal the model's own (values and gradients) where the
head allows it; elsewhere the trainer falls back to logits and says why."""

import contextlib
import logging

import pytest
import torch
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from rlzoo.trainer.batching import StepBatch
from rlzoo.trainer.forward import LogProbs, hidden_state_problem

SMALL = {"vocab_size": 97, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64}


def model_of(kind: str, tied: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    config, cls = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[kind]
    return cls(config(**SMALL, tie_word_embeddings=tied))


def batch() -> StepBatch:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 97, (3, 10), generator=g)
    attention = torch.ones(3, 10, dtype=torch.bool)
    attention[0, :2] = False  # a left-padded prompt
    return StepBatch(ids, attention, torch.ones(3, 6, dtype=torch.bool), torch.zeros(3), torch.zeros(3),
                     torch.arange(3))


def autocast(dtype: torch.dtype | None):
    return (lambda: torch.autocast("cpu", dtype=dtype)) if dtype else contextlib.nullcontext


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_hidden_states_give_the_logits_values_and_gradients(kind: str, tied: bool, dtype) -> None:
    model = model_of(kind, tied)
    assert hidden_state_problem(model) is None
    paths = {h: LogProbs(model, autocast(dtype), hidden_states=h) for h in (True, False)}
    assert paths[True].from_hidden and not paths[False].from_hidden
    results = {}
    for h, path in paths.items():
        model.zero_grad()
        logp, entropy = path.policy(batch(), temperature=0.7, entropy=True)
        (logp.sum() + 0.1 * entropy.sum()).backward()
        results[h] = (logp.detach(), entropy.detach(), [p.grad.clone() for p in model.parameters()])
    tol = 2e-5 if dtype is None else 2e-2
    torch.testing.assert_close(results[True][0], results[False][0], rtol=tol, atol=tol)
    torch.testing.assert_close(results[True][1], results[False][1], rtol=tol, atol=tol)
    for a, b in zip(results[True][2], results[False][2], strict=True):
        torch.testing.assert_close(a, b, rtol=tol * 10, atol=tol * 10)


def test_soft_capped_logits_fall_back_with_a_reason(caplog) -> None:
    torch.manual_seed(0)
    model = Gemma2ForCausalLM(Gemma2Config(**SMALL, head_dim=16, final_logit_softcapping=30.0))
    with caplog.at_level(logging.INFO, logger="rlzoo.trainer"):
        path = LogProbs(model, contextlib.nullcontext)
    assert not path.from_hidden
    assert "config.final_logit_softcapping=30.0" in caplog.text
