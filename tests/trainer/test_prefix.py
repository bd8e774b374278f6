"""Prompts run once per group give the unshared log-probs, entropies and gradients; where a model or
setting does not allow it the trainer runs each row's own prompt and says why."""

import contextlib
import logging

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

from rlzoo.trainer.batching import StepBatch
from rlzoo.trainer.forward import LogProbs, sharing_problem
from rlzoo.trainer.prefix import distinct
from tests.trainer.test_forward import SMALL, autocast, model_of


def groups(prompts: int = 3, group: int = 4, p: int = 7, t: int = 9, seed: int = 1) -> StepBatch:
    """``prompts`` groups of ``group`` rows; left-padded prompts, completions of different lengths."""
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(1, 97, (prompts, p), generator=g)
    prompt_mask = torch.ones(prompts, p, dtype=torch.bool)
    for i in range(prompts):
        prompt_mask[i, : i % p] = False
    rows = prompts * group
    lengths = torch.randint(1, t + 1, (rows,), generator=g)
    lengths[0] = t
    completion_mask = torch.arange(t)[None] < lengths[:, None]
    completion = torch.randint(1, 97, (rows, t), generator=g).where(completion_mask, 0)
    index = torch.arange(rows) // group
    return StepBatch(torch.cat([prompt[index], completion], 1), torch.cat([prompt_mask[index], completion_mask], 1),
                     completion_mask, torch.zeros(rows), torch.zeros(rows), index)


def shared_and_unshared(model, batch: StepBatch, dtype, chunks: list[torch.Tensor]):
    results = []
    for share in (8, 0):
        path = LogProbs(model, autocast(dtype), share_prompts=share)
        assert path.share_prompts == share
        model.zero_grad()
        shared = path.prompts(batch, batch.rows())
        assert (shared is None) == (share == 0)
        logp = torch.zeros(batch.completion_mask.shape)
        entropy = torch.zeros(batch.completion_mask.shape)
        for c in chunks:
            part = batch.select(c).trimmed()
            lp, ent = path.policy(part, 0.7, True, None if shared is None else shared.select(c))
            w = part.completion_mask
            ((lp * w).sum() + 0.1 * (ent * w).sum()).backward()
            logp[c, : lp.shape[1]], entropy[c, : lp.shape[1]] = lp.detach(), ent.detach()
        if shared is not None:
            shared.backward()
        mask = batch.completion_mask
        detached = path.detached(batch, chunks, 0.7)
        results.append((logp * mask, entropy * mask, detached * mask, [p.grad.clone() for p in model.parameters()]))
    return results


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_shared_prompts_give_the_unshared_values_and_gradients(kind: str, tied: bool, dtype) -> None:
    model = model_of(kind, tied)
    batch = groups()
    chunks = [torch.tensor([0, 5, 6]), torch.tensor([1, 2, 3, 4, 11]), torch.tensor([7, 8, 9, 10])]
    shared, unshared = shared_and_unshared(model, batch, dtype, chunks)
    tol = 2e-5 if dtype is None else 2e-2
    for a, b in zip(shared[:3], unshared[:3], strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    assert any(float(g.abs().max()) > 1e-3 for g in unshared[3])
    for a, b in zip(shared[3], unshared[3], strict=True):
        torch.testing.assert_close(a, b, rtol=tol * 10, atol=tol * 10)


def test_a_one_token_micro_batch_reads_only_the_prompt() -> None:
    model = model_of("llama", True)
    batch = groups(t=1)
    assert batch.completion_len == 1
    shared, unshared = shared_and_unshared(model, batch, None, [batch.rows()])
    torch.testing.assert_close(shared[0], unshared[0], rtol=2e-5, atol=2e-5)


def test_distinct_prompts_are_the_same_tokens_and_padding() -> None:
    batch = groups(prompts=3, group=2)
    rows = torch.tensor([0, 1, 3, 4])  # two rows of prompt 0, one of 1, one of 2
    prompts, first = distinct(batch, rows)
    assert prompts.tolist()[:2] == [prompts[0]] * 2 and prompts[2] == -1 and prompts[5] == -1
    assert len({int(prompts[0]), int(prompts[3]), int(prompts[4])}) == 3
    assert sorted(first.tolist()) == [0, 3, 4]
    assert all(int(prompts[r]) == i for i, r in enumerate(first.tolist()))
    padded = StepBatch(batch.input_ids.clone(), batch.attention_mask.clone(), *list(vars(batch).values())[2:])
    padded.attention_mask[1, 0] = not bool(padded.attention_mask[1, 0])  # same tokens, other padding
    assert distinct(padded, torch.tensor([0, 1]))[1].numel() == 2


def test_more_distinct_prompts_than_allowed_are_not_shared() -> None:
    path = LogProbs(model_of("llama", True), contextlib.nullcontext, share_prompts=2)
    batch = groups(prompts=3)
    assert path.prompts(batch, batch.rows()) is None
    assert path.prompts(batch, torch.arange(8)) is not None  # the first two groups
    assert path.prompts(batch, batch.rows()[:0]) is None


def test_sliding_window_attention_is_not_shared(caplog) -> None:
    torch.manual_seed(0)
    model = MistralForCausalLM(MistralConfig(**SMALL, sliding_window=4))
    assert "cache" in sharing_problem(model)
    with caplog.at_level(logging.INFO, logger="rlzoo.trainer"):
        path = LogProbs(model, contextlib.nullcontext, share_prompts=8)
    assert path.share_prompts == 0 and "prompts not shared" in caplog.text


def test_gradient_checkpointing_is_not_shared() -> None:
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SMALL))
    assert sharing_problem(model) is None
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert sharing_problem(model) == "gradient checkpointing is on"
