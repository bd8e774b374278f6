"""Operand tuples of the embedded tasks, split once and for all into an evaluation and a training part.

Every tuple of ``count`` operands in ``[low, high]`` has an index (the operands as digits in base
``high - low + 1``, the first most significant). A fixed permutation of the indices,
``p(i) = i * mult mod size``, is a bijection when ``gcd(mult, size) = 1``; with ``mult`` about
0.618 × ``size`` every part is spread over all operands. The evaluation part is ``p(i) < size / 10``.
Pure integer arithmetic: the split never changes with a library version, and train and eval never
share a prompt whatever the sizes and seeds.
"""

import math
import random
from dataclasses import dataclass
from typing import Literal

from rlzoo.errors import ConfigError

Split = Literal["train", "eval"]


@dataclass(frozen=True)
class OperandSpace:
    """Every tuple of ``count`` operands in ``[low, high]``, in the fixed permutation ``mult``."""

    count: int
    mult: int
    low: int = 10
    high: int = 99

    def __post_init__(self) -> None:
        if math.gcd(self.mult, self.size) != 1:
            raise ValueError(f"OperandSpace: mult={self.mult} shares a factor with size={self.size}")

    @property
    def span(self) -> int:
        return self.high - self.low + 1

    @property
    def size(self) -> int:
        return self.span**self.count

    def bounds(self, split: Split) -> tuple[int, int]:
        """The permuted indices ``[lo, hi)`` of ``split``."""
        eval_size = self.size // 10
        if split == "eval":
            return 0, eval_size
        if split == "train":
            return eval_size, self.size
        raise ConfigError(f"make_split: split must be 'train' or 'eval', got {split!r}")

    def split_size(self, split: Split) -> int:
        """How many distinct prompts ``split`` holds."""
        lo, hi = self.bounds(split)
        return hi - lo

    def operands(self, index: int) -> tuple[int, ...]:
        """The operands of tuple ``index``, the first most significant."""
        digits = []
        for _ in range(self.count):
            index, d = divmod(index, self.span)
            digits.append(d + self.low)
        return tuple(reversed(digits))

    def sample(self, split: Split, size: int, rng: random.Random, *, distinct: bool = True) -> list[tuple[int, ...]]:
        """``size`` operand tuples of ``split``: distinct ones, or drawn with replacement."""
        lo, hi = self.bounds(split)
        if distinct and not 0 <= size <= hi - lo:
            raise ConfigError(f"make_split: size={size} for split {split!r}; it holds {hi - lo} distinct prompts")
        positions = rng.sample(range(lo, hi), size) if distinct else [rng.randrange(lo, hi) for _ in range(size)]
        inverse = pow(self.mult, -1, self.size)
        return [self.operands(p * inverse % self.size) for p in positions]
