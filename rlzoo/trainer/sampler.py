"""Which prompts each process takes: a seeded order per epoch, read in steps of the whole world's batch."""

from typing import Any

import torch
from torch import Tensor


class PromptSampler:
    """Every process reads the same seeded epoch order and takes every ``world``-th prompt of each batch.

    Strided shares keep mini-batches the same whatever the number of processes: each process cuts
    its groups into ``mini_batches`` consecutive parts, so part ``j`` of every process together
    holds the ``j``-th consecutive block of the batch, exactly the part one process would take.

    The state is one number, the position in the infinite sequence of epochs (each a fresh seeded
    permutation of the dataset), so a resumed run continues exactly where it stopped.
    """

    def __init__(self, dataset: Any, seed: int, rank: int, world: int) -> None:
        self.dataset, self.seed, self.rank, self.world = dataset, seed, rank, world
        self.position = 0
        self._order: tuple[int, Tensor] | None = None

    def next(self, count: int) -> list[dict[str, Any]]:
        """This process's share of the next ``count`` prompts (``count`` divisible by the world size)."""
        start = self.position + self.rank
        self.position += count
        return [self._row(i) for i in range(start, start + count - self.rank, self.world)]

    def _row(self, i: int) -> dict[str, Any]:
        epoch, index = divmod(i, len(self.dataset))
        if self._order is None or self._order[0] != epoch:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._order = (epoch, torch.randperm(len(self.dataset), generator=gen, device="cpu"))
        return self.dataset[int(self._order[1][index])]

    def state_dict(self) -> dict[str, int]:
        return {"data_position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["data_position"])
