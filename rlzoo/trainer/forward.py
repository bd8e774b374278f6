"""Log-probs (and entropy) of completion tokens under the policy or the reference, at the sampling temperature.

Where it is exact, the log-probs come from the final hidden states through the LM head in
vocabulary chunks (:func:`rlzoo.losses.token_logprobs_from_hidden`), so a 152k vocabulary never
materialises ``[b, t, v]`` logits; otherwise from the model's logits. The policy, old and reference
log-probs all take the same path under the same autocast, so at step 0 the policy's and the
reference's log-probs are the same numbers and the KL is exactly 0, in fp32 and bf16 alike. The
reference is a frozen model, or (with LoRA) the policy with its adapters disabled. Where the model
allows it, each pass runs every distinct prompt once and its completions attend to the prompt's
keys and values (:mod:`rlzoo.trainer.prefix`); the policy, old and reference log-probs of a pass
then all take that path.
"""

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from rlzoo import losses
from rlzoo.trainer import sharding
from rlzoo.trainer.batching import StepBatch, micro_batches
from rlzoo.trainer.engines import Rollout
from rlzoo.trainer.prefix import PromptRows, SharedPrompts, distinct

logger = logging.getLogger("rlzoo.trainer")

_SCALED_LOGITS = ("final_logit_softcapping", "logit_softcapping", "logit_scale", "logits_scaling")


@contextlib.contextmanager
def _probing(model: torch.nn.Module) -> Iterator[None]:
    """Without a graph or dropout, the weights gathered; the model's mode restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), sharding.gathered(model):
            yield
    finally:
        model.train(was_training)


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
    with _probing(model):
        want = _from_logits(model, batch, 1.0, False)[0]
        got = _from_hidden(model, batch, 1.0, False)[0]
    gap = float((want - got).abs().max())
    return None if gap <= 1e-4 else f"a probe disagrees with the model's logits by {gap:.2g}"


def sharing_problem(model: torch.nn.Module) -> str | None:
    """Why the prompts could not run once per group (:mod:`rlzoo.trainer.prefix`; None: they can).

    Not under FSDP2 (its all-gathers pair up per forward and backward on every process) nor gradient
    checkpointing (it turns the cache off); otherwise a probe compares shared and unshared log-probs
    of three rows, two with one left-padded prompt.
    """
    if sharding.is_sharded(model):
        return "the model is sharded (FSDP2)"
    if any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules()):
        return "gradient checkpointing is on"
    device = next(model.parameters()).device
    ids = (torch.arange(30, device=device).view(3, 10) * 7 + 3) % model.get_output_embeddings().weight.shape[0]
    ids[1, :6] = ids[0, :6]  # rows 0 and 1: one prompt (left-padded), completions of 2 and 4 tokens
    attention = torch.ones_like(ids, dtype=torch.bool)
    attention[:2, :2] = False
    completion = torch.ones((3, 4), dtype=torch.bool, device=device)
    completion[0, 2:] = False
    attention[:, 6:] = completion
    zeros = torch.zeros(3, device=device)
    batch = StepBatch(ids, attention, completion, zeros, zeros, torch.tensor([0, 0, 1], device=device))
    rows = batch.rows()
    try:
        with _probing(model):
            want = _from_hidden(model, batch, 1.0, False)[0]
            prompts = SharedPrompts(model.get_decoder(), batch, distinct(batch, rows)).select(rows)
            got = _from_hidden(model, batch, 1.0, False, prompts)[0]
    except (TypeError, AttributeError, ValueError, RuntimeError) as exc:
        return f"its decoder does not take a cache of prompt keys and values ({type(exc).__name__}: {exc})"
    gap = float((want - got).abs().where(completion, 0.0).max())
    return None if gap <= 1e-4 else f"a probe disagrees with the unshared log-probs by {gap:.2g}"


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


def _from_hidden(
    model: torch.nn.Module, batch: StepBatch, temperature: float, entropy: bool, prompts: PromptRows | None = None
) -> tuple[Tensor, Any]:
    t = batch.completion_len
    if prompts is None:
        hidden = sharding.final_hidden_states(model, **_inputs(batch))[:, -t:]
    else:  # the prompts ran once (rlzoo.trainer.prefix): the completions attend to their keys and values
        hidden = prompts.hidden(model.get_decoder(), batch)
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
        share_prompts: from hidden states, run each distinct prompt of a pass once for at most this
            many distinct prompts (:mod:`rlzoo.trainer.prefix`) where :func:`sharing_problem` finds
            nothing; 0 never does.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        autocast: Callable[[], AbstractContextManager[Any]],
        *,
        reference: torch.nn.Module | None = None,
        adapters_as_reference: bool = False,
        hidden_states: bool = True,
        share_prompts: int = 0,
    ) -> None:
        self.model, self.autocast, self.reference = model, autocast, reference
        self.adapters_as_reference = adapters_as_reference
        problem = hidden_state_problem(model) if hidden_states else None
        if problem is not None:
            logger.info("log-probs from the model's logits, not its hidden states: %s", problem)
        self.from_hidden = hidden_states and problem is None
        self._compute = _from_hidden if self.from_hidden else _from_logits
        problem = sharing_problem(model) if share_prompts and self.from_hidden else None
        if problem is not None:
            logger.info("each sequence runs its own prompt (prompts not shared by a group): %s", problem)
        self.share_prompts = share_prompts if self.from_hidden and problem is None else 0

    def prompts(self, batch: StepBatch, rows: Tensor, model: torch.nn.Module | None = None) -> SharedPrompts | None:
        """The distinct prompts of ``batch``'s ``rows`` run once through ``model`` (the policy by default;
        with a graph where grad is enabled), or None where prompts are not shared or there are more
        than ``share_prompts`` of them."""
        if not self.share_prompts or rows.numel() == 0:
            return None
        prompts = distinct(batch, rows)
        if prompts[1].numel() > self.share_prompts:
            return None
        with self.autocast():
            return SharedPrompts((model or self.model).get_decoder(), batch, prompts)

    def policy(
        self, batch: StepBatch, temperature: float, entropy: bool = False, prompts: PromptRows | None = None
    ) -> tuple[Float[Tensor, "b t"], Float[Tensor, "b t"] | None]:
        """Per-token log-probs of ``batch``'s completions under the policy (and its entropy); ``prompts``:
        these rows' shared prompts (from :meth:`prompts`), None to run each row's own."""
        with self.autocast():
            return self._logp(self.model, batch, temperature, entropy, prompts)

    def _logp(
        self, model: torch.nn.Module, batch: StepBatch, temperature: float, entropy: bool, prompts: PromptRows | None
    ) -> tuple[Tensor, Any]:
        if prompts is None:
            return self._compute(model, batch, temperature or 1.0, entropy)
        return _from_hidden(model, batch, temperature or 1.0, entropy, prompts)

    @torch.no_grad()
    def detached(
        self, batch: StepBatch, chunks: list[Tensor], temperature: float, *, reference: bool = False
    ) -> Float[Tensor, "b t"]:
        """Log-probs of every row of ``batch`` without a graph, micro-batch by micro-batch, under the
        policy or (``reference``) the reference."""
        out = batch.completion_mask.new_zeros(batch.completion_mask.shape, dtype=torch.float32)
        model = self.reference if reference and self.reference is not None else self.model
        off = self.model.disable_adapter() if reference and self.adapters_as_reference else contextlib.nullcontext()
        with off, sharding.gathered(model):
            rows = torch.cat(chunks) if chunks else batch.rows()[:0]
            shared = self.prompts(batch, rows, model)
            with self.autocast():
                for c in chunks:  # each trimmed to its longest row, written back into the full width
                    prompts = None if shared is None else shared.select(c)
                    logp = self._logp(model, batch.select(c).trimmed(), temperature, False, prompts)[0]
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
