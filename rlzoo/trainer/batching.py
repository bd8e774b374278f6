"""The sequences a process trains on, and how they are cut: mini-batches of whole groups, micro-batches."""

from dataclasses import dataclass, fields

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from rlzoo.trainer.engines import Rollout
from rlzoo.types import Groups


@dataclass(frozen=True, eq=False)
class StepBatch:
    """The sequences one process trains on in one step, padded to common prompt/completion widths."""

    input_ids: Int[Tensor, "b s"]
    attention_mask: Bool[Tensor, "b s"]
    completion_mask: Bool[Tensor, "b t"]
    advantages: Float[Tensor, " b"]
    rewards: Float[Tensor, " b"]
    group_ids: Int[Tensor, " b"]
    rollout_logp: Float[Tensor, "b t"] | None = None  # the engine's, where it reports them

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]

    @property
    def completion_len(self) -> int:
        return self.completion_mask.shape[1]

    def rows(self) -> Int[Tensor, " b"]:
        return torch.arange(self.size, device=self.input_ids.device)

    def select(self, rows: Int[Tensor, " r"]) -> "StepBatch":
        return StepBatch(*(None if (v := getattr(self, f.name)) is None else v[rows] for f in fields(self)))

    def trimmed(self) -> "StepBatch":
        """The same sequences without the columns that are padding in every row: prompt columns on the
        left, completion columns past the longest completion (log-probs come back ``[b, t']``)."""
        t = self.completion_len
        p = self.input_ids.shape[1] - t
        keep_p = int(self.attention_mask[:, :p].sum(1).max()) if self.size else p
        keep_t = max(1, int(self.completion_mask.sum(1).max())) if self.size else t
        if keep_p == p and keep_t == t:
            return self
        columns = slice(p - keep_p, p + keep_t)
        return StepBatch(self.input_ids[:, columns], self.attention_mask[:, columns], self.completion_mask[:, :keep_t],
                         self.advantages, self.rewards, self.group_ids,
                         None if self.rollout_logp is None else self.rollout_logp[:, :keep_t])

    @classmethod
    def of(cls, rollout: Rollout, groups: Groups, advantages: Float[Tensor, "n g"], offset: int) -> "StepBatch":
        """The valid sequences of ``rollout``, prompt and completion joined; group ids start at ``offset``
        (where this process's groups sit in the whole step)."""
        rows = groups.mask.reshape(-1).nonzero().squeeze(1)
        prompt_rows = rows // groups.g
        return cls(
            input_ids=torch.cat([rollout.prompt_ids[prompt_rows], rollout.completion_ids[rows]], 1),
            attention_mask=torch.cat([rollout.prompt_mask[prompt_rows], rollout.completion_mask[rows]], 1),
            completion_mask=rollout.completion_mask[rows],
            advantages=advantages.reshape(-1)[rows],
            rewards=groups.rewards.reshape(-1)[rows],
            group_ids=prompt_rows + offset,
            rollout_logp=None if rollout.rollout_logp is None else rollout.rollout_logp[rows],
        )


# On CPU a micro-batch is cut where more than this share of its tokens would be padding: a micro-batch
# costs little beyond its tokens there (measured: about one row's), so padding is what to save. Elsewhere
# (GPU: a small model's micro-batch costs its kernel launches) only ``size`` cuts: not measured yet.
CPU_PADDING = 0.1


def micro_batches(batch: StepBatch, rows: Int[Tensor, " r"], size: int, whole_groups: bool) -> list[Tensor]:
    """``rows`` cut into micro-batches of at most ``size`` sequences (none when ``rows`` is empty),
    each trimmed to its own longest row by :meth:`StepBatch.trimmed`.

    Sequences go longest first. On CPU a micro-batch also stops before its padding (rows x its
    longest prompt + longest completion, less their tokens) would pass ``CPU_PADDING`` of its
    tokens, so short completions are not padded to the step's longest; it never holds more tokens
    than ``size`` rows of the longest would (the memory bound ``micro_batch_size`` sets). The loss
    normalisers are the step's, so the gradient does not depend on the grouping. With
    ``whole_groups`` every group's sequences stay in one micro-batch, in order, about ``size``
    sequences each (a micro-batch may exceed ``size`` by up to one group).
    """
    if rows.numel() == 0:
        return []
    if not whole_groups:
        lengths = batch.attention_mask[rows].sum(1)
        order = lengths.argsort(descending=True, stable=True)
        rows = rows[order]
        if batch.input_ids.device.type != "cpu":
            return list(rows.split(size))
        lengths = lengths[order]
        prompt = lengths - batch.completion_mask[rows].sum(1)
        out, start = [], 0
        while start < rows.numel():  # one pass per micro-batch, vectorised over its candidate rows
            end = min(start + size, rows.numel())
            width = prompt[start:end].cummax(0).values + (lengths - prompt)[start:end].cummax(0).values.clamp_min(1)
            padded = width * torch.arange(1, end - start + 1, device=width.device)
            fits = padded <= (1 + CPU_PADDING) * lengths[start:end].cumsum(0)  # True, then False: padding grows
            take = max(1, int(fits.sum()))
            out.append(rows[start : start + take])
            start += take
        return out
    ids = batch.group_ids[rows]
    starts = torch.cat([ids.new_ones(1, dtype=torch.bool), ids[1:] != ids[:-1]]).nonzero().squeeze(1)
    out, current = [], 0
    for end in [*starts.tolist()[1:], rows.numel()]:
        if end - current >= size or end == rows.numel():
            out.append(rows[current:end])
            current = end
    return out


def mini_batches(batch: StepBatch, parts: int) -> list[Tensor]:
    """This process's rows in ``parts`` parts of whole groups, in order (a part may be empty)."""
    rows = batch.rows()
    if parts == 1:
        return [rows]
    _, local_group = batch.group_ids.unique_consecutive(return_inverse=True)
    n_groups = int(local_group.max()) + 1 if batch.size else 0
    part = local_group * parts // max(n_groups, 1)
    return [rows[part == j] for j in range(parts)]
