"""The second embedded task: add four 2-digit numbers, where skipping a partial sum costs accuracy.

A prompt is ``37+48+55+21=`` (always 12 characters). A solution trace writes the partial sums it
keeps, each intermediate one skipped with probability :data:`SKIP_PROB` (the skipped operand is
folded into the next step), then ``#`` and the answer::

    37+48=85;85+55=140;140+21=161;#161      every step written (36 tokens)
    37+48+55=140;140+21=161;#161            the first partial sum skipped (28 tokens)
    37+48+55+21=161;#161                    both skipped: the whole sum in one step (20 tokens)

Here length is not free as in :mod:`rlzoo.tasks.arithmetic` (whose verbose steps never change the
answer): every token a shorter trace saves is a step of the sum the model must then do in its
head, and the tiny model adds two numbers far more reliably than three or four at once. So the
right answer needs the longer trace, and a length reward that only shortens completions shows
up here as lost accuracy. The warm start learns the skips with probability 0.6 each, so its most
likely path is the shortest, least reliable one, and its greedy answer is wrong more often than
not: a recipe has to learn to write the steps (:func:`steps_written` counts them).

The 65,610,000 operand quadruples are split once, by a fixed permutation, into an evaluation part
(10%) and a training part, as in :mod:`rlzoo.tasks.arithmetic`; the reward is the same
:func:`~rlzoo.tasks.arithmetic.arithmetic_correct` (the text after the last ``#``).
"""

import random
from collections.abc import Sequence

from rlzoo.tasks.arithmetic import final_answer
from rlzoo.tasks.operands import OperandSpace, Split

__all__ = [
    "OPERANDS",
    "PROMPT_LENGTH",
    "SKIP_PROB",
    "make_split",
    "operands",
    "sample_operands",
    "solution_trace",
    "split_size",
    "steps_written",
    "training_examples",
]

OPERANDS = 4
_SPACE = OperandSpace(count=OPERANDS, mult=40_549_211)  # 65,610,000 quadruples

PROMPT_LENGTH = len("37+48+55+21=")
SKIP_PROB = 0.6  # P(an intermediate partial sum is not written) in the warm-start traces


def split_size(split: Split) -> int:
    """How many distinct prompts the split holds (6,561,000 for eval, 59,049,000 for train)."""
    return _SPACE.split_size(split)


def sample_operands(split: Split, size: int, rng: random.Random, *, distinct: bool = True) -> list[tuple[int, ...]]:
    """``size`` operand quadruples of one split; distinct ones, or drawn with replacement."""
    return _SPACE.sample(split, size, rng, distinct=distinct)


def make_split(split: Split, size: int, seed: int = 0) -> list[dict[str, str]]:
    """``size`` distinct examples ``{"prompt": "37+48+55+21=", "answer": "161"}`` of one split.

    Deterministic in ``seed``; the train and eval splits never share a prompt.
    """
    return [{"prompt": "+".join(map(str, ops)) + "=", "answer": str(sum(ops))}
            for ops in sample_operands(split, size, random.Random(seed))]


def operands(prompt: str) -> tuple[int, ...]:
    """The operands of a prompt ``'37+48+55+21='``."""
    return tuple(int(x) for x in prompt.removesuffix("=").split("+"))


def solution_trace(ops: Sequence[int], rng: random.Random, skip_prob: float = SKIP_PROB) -> str:
    """A correct completion for ``ops`` (EOS not included); each intermediate partial sum is skipped
    with probability ``skip_prob`` (one ``rng.random()`` call per intermediate sum)."""
    pending, total, steps = [ops[0]], ops[0], []
    for i, x in enumerate(ops[1:], start=2):
        pending.append(x)
        total += x
        if i == len(ops) or rng.random() >= skip_prob:
            steps.append("+".join(map(str, pending)) + f"={total};")
            pending = [total]
    return "".join(steps) + f"#{total}"


def training_examples(size: int, rng: random.Random) -> list[tuple[str, str]]:
    """``size`` (prompt, trace) pairs from the train split, prompts drawn with replacement."""
    return [("+".join(map(str, ops)) + "=", solution_trace(ops, rng))
            for ops in sample_operands("train", size, rng, distinct=False)]


def steps_written(completion: str) -> int | None:
    """How many steps (``...=partial;``) a completion writes before its answer; None without ``#``.

    A full trace writes ``OPERANDS - 1`` steps; each skipped partial sum is one fewer.
    """
    if final_answer(completion) is None:
        return None
    return completion.rpartition("#")[0].count("=")
