"""Log-probs (and entropy) of completion tokens under the policy or the reference, at the sampling temperature.

Where it is exact, the log-probs come from the final hidden states through the LM head in
vocabulary chunks (:func:`rlzoo.losses.token_logprobs_from_hidden`), so a 152k vocabulary never
materialises ``[b, t, v]`` logits; otherwise from the model's logits. The policy, old and reference
log-probs all take the same path under the same autocast, so at step 0 the policy's and the
reference's log-probs are the same numbers and the KL is exactly 0, in fp32 and bf16 alike. The
reference is a frozen model, or (with LoRA) the policy with its adapters disabled.
"""

import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from rlzoo import losses
from rlzoo.trainer import sharding
from rlzoo.trainer.batching import StepBatch, micro_batches
from rlzoo.trainer.engines import Rollout

logger = logging.getLogger("rlzoo.trainer")

_SCALED_LOGITS = ("final_logit_softcapping", "logit_softcapping", "logit_scale", "logits_scaling")


def hidden_state_problem(model: torch.nn.Module) -> str | None:
    """Why log-probs from hidden states would not equal the model's own (None: they do).

    The head must be a bias-free linear layer applied to the decoder's output, with no soft-capping
    or scaling of the logits in the config; a probe then compares both paths on a few tokens.
    """
    config = model.config
    for name in _SCALED_LOGITS:
        value = getattr(config, name, None)
        if value is not None and value != 1:
            return f"the model scales or caps its logits (config.{name}={value})"
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear) or head.bias is not None:
        return f"its head is not a bias-free linear layer ({type(head).__name__})"
    try:
        model.get_decoder()
    except (AttributeError, NotImplementedError) as exc:
        return f"its decoder cannot be reached ({exc})"
    device = next(model.parameters()).device
    ids = torch.arange(6, device=device)[None] % head.out_features
    batch = StepBatch(ids, torch.ones_like(ids, dtype=torch.bool), torch.ones((1, 3), dtype=torch.bool, device=device),
                      torch.zeros(1, device=device), torch.zeros(1, device=device), torch.zeros(1, dtype=torch.long, device=device))
    was_training = model.training
    model.eval()  # no dropout in the comparison
    with torch.no_grad(), sharding.gathered(model):
        want = _from_logits(model, batch, 1.0, False)[0]
        got = _from_hidden(model, batch, 1.0, False)[0]
    model.train(was_training)
    gap = float((want - got).abs().max())
    return None if gap <= 1e-4 else f"a probe disagrees with the model's logits by {gap:.2g}"


def _inputs(batch: StepBatch) -> dict[str, Tensor | bool]:
    """The model's inputs for ``batch`` without its last column: no token follows the last one, so
    its output is never read (causal attention: the other positions' outputs do not depend on it)."""
    positions = (batch.attention_mask.long().cumsum(1) - 1).clamp_min(0)
    return {"input_ids": batch.input_ids[:, :-1], "attention_mask": batch.attention_mask[:, :-1].long(),
            "position_ids": positions[:, :-1], "use_cache": False}


def _from_logits(model: torch.nn.Module, batch: StepBatch, temperature: float, entropy: bool) -> tuple[Tensor, Any]:
    t = batch.completion_len
    out = model(**_inputs(batch), logits_to_keep=t)
    result = losses.token_logprobs(out.logits.float(), batch.input_ids[:, -t:], temperature=temperature,
                                   entropy=entropy)
    return result.logp, result.entropy


def _from_hidden(model: torch.nn.Module, batch: StepBatch, temperature: float, entropy: bool) -> tuple[Tensor, Any]:
    t = batch.completion_len
    hidden = sharding.final_hidden_states(model, **_inputs(batch))[:, -t:]
    device = hidden.device.type
    # the head's matmul in the precision the model's own head runs in (autocast's, where it is on)
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    with torch.autocast(device, enabled=False):
        weight = model.get_output_embeddings().weight
        result = losses.token_logprobs_from_hidden(hidden.to(dtype), weight.to(dtype), batch.input_ids[:, -t:],
                                                   temperature=temperature, entropy=entropy)
    return result.logp, result.entropy


class LogProbs:
    """Completion log-probs of the policy (with a graph) and, detached, of the policy or the reference.

    Args:
        model: the policy (a PEFT model when ``adapters_as_reference``).
        autocast: the run's autocast context (``accelerator.autocast``).
        reference: a frozen reference model, or None.
        adapters_as_reference: the reference is ``model`` with its adapters disabled (LoRA).
        hidden_states: compute from the final hidden states where :func:`hidden_state_problem`
            finds nothing (one log line says why not otherwise).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        autocast: Callable[[], AbstractContextManager[Any]],
        *,
        reference: torch.nn.Module | None = None,
        adapters_as_reference: bool = False,
        hidden_states: bool = True,
    ) -> None:
        self.model, self.autocast, self.reference = model, autocast, reference
        self.adapters_as_reference = adapters_as_reference
        problem = hidden_state_problem(model) if hidden_states else None
        if problem is not None:
            logger.info("log-probs from the model's logits, not its hidden states: %s", problem)
        self.from_hidden = hidden_states and problem is None
        self._compute = _from_hidden if self.from_hidden else _from_logits

    def policy(
        self, batch: StepBatch, temperature: float, entropy: bool = False
    ) -> tuple[Float[Tensor, "b t"], Float[Tensor, "b t"] | None]:
        """Per-token log-probs of ``batch``'s completions under the policy (and its entropy)."""
        with self.autocast():
            return self._compute(self.model, batch, temperature or 1.0, entropy)

    @torch.no_grad()
    def detached(
        self, batch: StepBatch, chunks: list[Tensor], temperature: float, *, reference: bool = False
    ) -> Float[Tensor, "b t"]:
        """Log-probs of every row of ``batch`` without a graph, micro-batch by micro-batch, under the
        policy or (``reference``) the reference."""
        out = batch.completion_mask.new_zeros(batch.completion_mask.shape, dtype=torch.float32)
        model = self.reference if reference and self.reference is not None else self.model
        off = self.model.disable_adapter() if reference and self.adapters_as_reference else contextlib.nullcontext()
        with off, sharding.gathered(model), self.autocast():
            for c in chunks:  # each trimmed to its longest row, written back into the full width
                logp = self._compute(model, batch.select(c).trimmed(), temperature or 1.0, False)[0]
                out[c, : logp.shape[1]] = logp
        return out


def sequence_kl(
    logprobs: LogProbs, estimator: Any, temperature: float, micro_batch_size: int, rollout: Rollout
) -> Float[Tensor, " m"]:
    """The reward-side KL penalty: per completion, the sum over its tokens of ``estimator(logp, ref_logp)``."""
    batch = rollout_batch(rollout)
    chunks = micro_batches(batch, batch.rows(), micro_batch_size, False)  # by length, as the update's
    logp = logprobs.detached(batch, chunks, temperature)
    ref = logprobs.detached(batch, chunks, temperature, reference=True)
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
