"""Each distinct prompt of a batch run once, its keys and values shared by every completion of its group.

In a group-based step each prompt has ``group_size`` completions, and an unshared forward spends a
row's first ``p`` positions on its prompt: the same numbers in every row of the group (attention is
causal, so a prompt position never sees its completion). Here the distinct prompts run once, with a
graph. Each micro-batch's completions attend to their prompt's keys and values through detached
copies (leaves), whose gradients add up over the micro-batches; :meth:`SharedPrompts.backward` then
sends them through the prompts' forward once. Log-probs and gradients are the unshared ones up to
float rounding; the update's tokens shrink by the prompts' share (measured: 20 % off the tiny
model's update).

The prompts' graph lives for the whole optimiser step, so sharing is used only for at most
:class:`rlzoo.trainer.forward.LogProbs`'s ``share_prompts`` distinct prompts (the trainer: half
the micro-batch size). Then it holds fewer
tokens than the prompt positions a micro-batch no longer runs, and the memory bound that
``micro_batch_size`` sets still holds.
"""

import inspect
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from rlzoo.trainer.batching import StepBatch


class SharedPrompts:
    """The distinct prompts of ``batch``'s ``rows``, run once through ``decoder`` (with a graph where
    grad is enabled).

    Args:
        decoder: the model's decoder (``model.get_decoder()``).
        batch: the step's sequences.
        prompts: each row's distinct prompt, ``-1`` for rows not in this pass, and a row of each
            distinct prompt (:func:`distinct`).
    """

    def __init__(self, decoder: torch.nn.Module, batch: StepBatch, prompts: tuple[Tensor, Tensor]) -> None:
        p = batch.input_ids.shape[1] - batch.completion_len
        self.prompts, first = prompts
        mask = batch.attention_mask[first, :p]
        keep = int(mask.sum(1).max())  # the prompts' own longest: their common left padding goes
        ids, mask = batch.input_ids[first, p - keep : p], mask[:, p - keep :]
        positions = (mask.long().cumsum(1) - 1).clamp_min(0)
        self.argument = cache_argument(decoder)
        out = decoder(input_ids=ids, attention_mask=mask.long(), position_ids=positions, use_cache=True)
        layers = getattr(out, self.argument).layers
        if not all(type(layer) is DynamicLayer for layer in layers):
            raise TypeError(f"the decoder's cache has {sorted({type(x).__name__ for x in layers})} layers, not full attention")
        # the last hidden state predicts each completion's first token; then every layer's keys, values
        self.outputs = [out.last_hidden_state[:, -1], *(t for layer in layers for t in (layer.keys, layer.values))]
        self.leaves = [x.detach().requires_grad_(x.requires_grad) for x in self.outputs]
        self.mask, self.lengths = mask, mask.sum(1)

    def select(self, rows: Int[Tensor, " r"]) -> "PromptRows":
        """What the batch's ``rows`` attend to and start from (gradients flow back to the leaves)."""
        index = self.prompts[rows]
        last, kv = self.leaves[0], self.leaves[1:]
        return PromptRows(last[index], [(kv[i][index], kv[i + 1][index]) for i in range(0, len(kv), 2)],
                          self.mask[index], self.lengths[index], self.argument)

    def backward(self) -> None:
        """The gradients the micro-batches left on the leaves, through the prompts' forward (a no-op
        without a graph)."""
        pairs = [(x, leaf.grad) for x, leaf in zip(self.outputs, self.leaves, strict=True)
                 if x.requires_grad and leaf.grad is not None]
        if pairs:
            torch.autograd.backward([x for x, _ in pairs], [g for _, g in pairs])


@dataclass(frozen=True, eq=False)
class PromptRows:
    """Some rows' prompts: the last hidden state, every layer's keys and values, the mask, the lengths."""

    last: Float[Tensor, "r h"]
    cache: list[tuple[Tensor, Tensor]]
    mask: Bool[Tensor, "r p"]
    lengths: Int[Tensor, " r"]
    argument: str  # the decoder's name for its cache (:func:`cache_argument`)

    def hidden(self, decoder: torch.nn.Module, part: StepBatch) -> Float[Tensor, "r t h"]:
        """The final hidden states that predict ``part``'s completion tokens (``part``: these rows,
        trimmed): the prompt's last one, then the completion's own but its last."""
        t = part.completion_len
        first = self.last[:, None]
        if t == 1:
            return first
        columns = slice(-t, -1)
        attention = torch.cat([self.mask, part.attention_mask[:, columns]], 1).long()
        positions = self.lengths[:, None] + torch.arange(t - 1, device=self.lengths.device)
        out = decoder(input_ids=part.input_ids[:, columns], attention_mask=attention, position_ids=positions,
                      use_cache=True, **{self.argument: DynamicCache(self.cache)})
        return torch.cat([first, out.last_hidden_state], 1)


def cache_argument(decoder: torch.nn.Module) -> str:
    """The decoder's name for its cache, in and out: ``cache`` (newer transformers) or ``past_key_values`` (5.19 and older)."""
    return "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"


def distinct(batch: StepBatch, rows: Int[Tensor, " r"]) -> tuple[Int[Tensor, " b"], Int[Tensor, " n"]]:
    """Each batch row's distinct prompt among ``rows`` (the same tokens and padding), ``-1`` elsewhere,
    and the first of ``rows`` with each of the ``n`` distinct prompts."""
    p = batch.input_ids.shape[1] - batch.completion_len
    key = torch.cat([batch.input_ids[rows, :p], batch.attention_mask[rows, :p].long()], 1)
    _, inverse = key.unique(dim=0, return_inverse=True)
    prompts = torch.full((batch.size,), -1, dtype=torch.long, device=rows.device)
    prompts[rows] = inverse
    count = int(inverse.max()) + 1 if rows.numel() else 0
    first = torch.full((count,), batch.size, dtype=torch.long, device=rows.device)
    return prompts, first.scatter_reduce_(0, inverse, rows, "amin")
