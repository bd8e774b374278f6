"""Micro-batches: every row once, at most ``size`` rows, cut by length on CPU so little compute is padding."""

import torch

from rlzoo.trainer.batching import CPU_PADDING, StepBatch, micro_batches


def step_batch(prompt: list[int], completion: list[int]) -> StepBatch:
    """Left-padded prompts and right-padded completions of the given lengths."""
    b, p, t = len(prompt), max(prompt), max(completion)
    prompt_mask = torch.arange(p).flip(0)[None] < torch.tensor(prompt)[:, None]
    completion_mask = torch.arange(t)[None] < torch.tensor(completion)[:, None]
    zeros = torch.zeros(b)
    return StepBatch(torch.ones(b, p + t, dtype=torch.long), torch.cat([prompt_mask, completion_mask], 1),
                     completion_mask, zeros, zeros, torch.arange(b))


def padded(batch: StepBatch, chunk: torch.Tensor) -> int:
    return batch.select(chunk).trimmed().input_ids.numel()


def test_uneven_lengths_are_cut_where_padding_would_pass_the_limit() -> None:
    g = torch.Generator().manual_seed(0)
    completion = (torch.rand(40, generator=g) ** 3 * 63).long().add(1).tolist()  # mostly short, a few long
    prompt = torch.randint(5, 12, (40,), generator=g).tolist()
    batch = step_batch(prompt, completion)
    chunks = micro_batches(batch, batch.rows(), 16, whole_groups=False)
    assert sorted(torch.cat(chunks).tolist()) == list(range(40))
    real = batch.attention_mask.sum(1)
    for c in chunks:
        assert c.numel() <= 16
        assert c.numel() == 1 or padded(batch, c) <= (1 + CPU_PADDING) * int(real[c].sum())
    whole_step = batch.input_ids.shape[1]
    assert all(padded(batch, c) <= 16 * whole_step for c in chunks)  # never more than `size` rows held
    by_count = batch.rows()[real.argsort(descending=True, stable=True)].split(16)
    assert sum(padded(batch, c) for c in chunks) < 0.7 * sum(padded(batch, c) for c in by_count)


def test_equal_lengths_are_cut_by_count_only() -> None:
    batch = step_batch([6] * 10, [9] * 10)
    assert [c.numel() for c in micro_batches(batch, batch.rows(), 4, whole_groups=False)] == [4, 4, 2]
    assert micro_batches(batch, batch.rows()[:0], 4, whole_groups=False) == []


def test_whole_groups_stay_together_in_order() -> None:
    batch = step_batch([6] * 6, [1, 9, 3, 9, 2, 5])
    batch = StepBatch(*(batch.group_ids // 2 if f == "group_ids" else getattr(batch, f)
                        for f in batch.__dataclass_fields__))
    chunks = micro_batches(batch, batch.rows(), 3, whole_groups=True)
    assert [c.tolist() for c in chunks] == [[0, 1, 2, 3], [4, 5]]
