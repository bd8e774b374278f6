"""Log-probs (and entropy) of completion tokens under a model, at the sampling temperature.

The policy and the reference model are both prepared by ``accelerate``, so both forwards run in
the same precision and autocast: at step 0 the policy's and the reference's log-probs are the same
numbers and the KL is exactly 0, in fp32 and bf16 alike.
"""

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from rlzoo import losses
from rlzoo.trainer.batching import StepBatch
from rlzoo.trainer.engines import Rollout


def completion_logp(
    model: torch.nn.Module, batch: StepBatch, temperature: float, entropy: bool = False
) -> tuple[Float[Tensor, "b t"], Float[Tensor, "b t"] | None]:
    """Per-token log-probs of ``batch``'s completions (and the policy's entropy at each position)."""
    t = batch.completion_len
    position_ids = (batch.attention_mask.long().cumsum(1) - 1).clamp_min(0)
    out = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask.long(),
        position_ids=position_ids,
        logits_to_keep=t + 1,
        use_cache=False,
    )
    logits = out.logits[:, :-1].float()
    result = losses.token_logprobs(logits, batch.input_ids[:, -t:], temperature=temperature or 1.0, entropy=entropy)
    return result.logp, result.entropy


@torch.no_grad()
def detached_logp(
    model: torch.nn.Module, batch: StepBatch, chunks: list[Tensor], temperature: float
) -> Float[Tensor, "b t"]:
    """Log-probs of every row of ``batch`` without a graph, computed micro-batch by micro-batch."""
    if not chunks:
        return batch.completion_mask.new_zeros(batch.completion_mask.shape, dtype=torch.float32)
    return torch.cat([completion_logp(model, batch.select(c), temperature)[0] for c in chunks])


def sequence_kl(
    policy: torch.nn.Module,
    reference: torch.nn.Module,
    estimator: Any,
    temperature: float,
    micro_batch_size: int,
    rollout: Rollout,
) -> Float[Tensor, " m"]:
    """The reward-side KL penalty: per completion, the sum over its tokens of ``estimator(logp, ref_logp)``."""
    batch = rollout_batch(rollout)
    chunks = list(batch.rows().split(micro_batch_size))
    logp = detached_logp(policy, batch, chunks, temperature)
    ref = detached_logp(reference, batch, chunks, temperature)
    return estimator(logp, ref).where(rollout.completion_mask, 0.0).sum(1)


def rollout_batch(rollout: Rollout) -> StepBatch:
    """Every sequence of ``rollout`` as a StepBatch (no advantages yet: zeros)."""
    g = rollout.group_size
    rows = torch.arange(rollout.completion_ids.shape[0], device=rollout.completion_ids.device)
    zeros = torch.zeros(rows.numel(), device=rows.device)
    return StepBatch(
        input_ids=torch.cat([rollout.prompt_ids[rows // g], rollout.completion_ids], 1),
        attention_mask=torch.cat([rollout.prompt_mask[rows // g], rollout.completion_mask], 1),
        completion_mask=rollout.completion_mask,
        advantages=zeros,
        rewards=zeros,
        group_ids=rows // g,
    )
