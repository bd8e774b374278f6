"""The embedded reasoning task: add three 2-digit numbers, showing each partial sum.

A prompt is ``37+48+55=`` (always 9 characters, so prompts never need padding). A solution trace
writes each real partial sum, each optionally followed by "verbose" steps that restate it
(``so 85;``) or re-check it with the operands swapped (``chk 48+37=85;``), then ``#`` and the
answer::

    37+48=85;chk 48+37=85;85+55=140;so 140;#140

The verbose steps never change the answer, so the length of a correct completion is a real degree of
freedom: the warm start learns 0, 1 or 2 verbose steps per partial sum with probability
0.25 / 0.45 / 0.30 (:data:`VERBOSE_PROBS`), so its most likely path *has* a verbose step and a
length-aware reward has something to remove.

The 729,000 operand triples are split once, by a fixed permutation, into an evaluation part (10%)
and a training part; :func:`make_split` samples distinct prompts from one part, so train and eval
never share a prompt whatever the sizes and seeds.
"""

import random
from collections.abc import Sequence
from typing import Any

from rlzoo.errors import DataError
from rlzoo.tasks.operands import OperandSpace, Split
from rlzoo.text import completion_text

__all__ = [
    "PROMPT_LENGTH",
    "VERBOSE_PROBS",
    "arithmetic_correct",
    "final_answer",
    "make_split",
    "operands",
    "sample_operands",
    "solution_trace",
    "split_size",
]

_SPACE = OperandSpace(count=3, mult=450_547)  # 729,000 triples; gcd(450547, 729000) = 1

PROMPT_LENGTH = len("37+48+55=")
VERBOSE_PROBS = (0.25, 0.45, 0.30)  # P(0, 1, 2 verbose steps) after each partial sum


def split_size(split: Split) -> int:
    """How many distinct prompts the split holds (72,900 for eval, 656,100 for train)."""
    return _SPACE.split_size(split)


def sample_operands(split: Split, size: int, rng: random.Random, *, distinct: bool = True) -> list[tuple[int, ...]]:
    """``size`` operand triples of one split; distinct ones, or drawn with replacement."""
    return _SPACE.sample(split, size, rng, distinct=distinct)


def make_split(split: Split, size: int, seed: int = 0) -> list[dict[str, str]]:
    """``size`` distinct examples ``{"prompt": "37+48+55=", "answer": "140"}`` of one split.

    Deterministic in ``seed`` (Python's ``random.sample``); the train and eval splits never share a
    prompt, whatever the sizes, seeds or versions (the partition is fixed integer arithmetic).
    """
    triples = sample_operands(split, size, random.Random(seed))
    return [{"prompt": f"{a}+{b}+{c}=", "answer": str(a + b + c)} for a, b, c in triples]


def operands(prompt: str) -> tuple[int, int, int]:
    """The three operands of a prompt ``'37+48+55='``."""
    a, b, c = prompt.removesuffix("=").split("+")
    return int(a), int(b), int(c)


def _verbose(x: int, y: int, total: int, rng: random.Random) -> str:
    count = rng.choices(range(len(VERBOSE_PROBS)), weights=VERBOSE_PROBS)[0]
    steps = (f"so {total};" if rng.random() < 0.5 else f"chk {y}+{x}={total};" for _ in range(count))
    return "".join(steps)


def solution_trace(a: int, b: int, c: int, rng: random.Random) -> str:
    """A correct completion for ``a+b+c=`` with random verbose steps (EOS not included)."""
    first, total = a + b, a + b + c
    return (
        f"{a}+{b}={first};{_verbose(a, b, first, rng)}"
        f"{first}+{c}={total};{_verbose(first, c, total, rng)}#{total}"
    )


def final_answer(completion: str) -> str | None:
    """The text after the last ``#``, stripped; None when there is no ``#``."""
    _, hash_sign, tail = completion.rpartition("#")
    return tail.strip() if hash_sign else None


def arithmetic_correct(
    prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[str], **kwargs: object
) -> list[float]:
    """1.0 where the text after the completion's last ``#`` equals the answer, else 0.0 (TRL's contract).

    Implementation details:

    1. The text after the last ``#`` is compared with ``answer`` after stripping whitespace on both;
       anything else after the number (``#140;``, ``#140 so``) makes it wrong, so does a missing ``#``.
    2. Exact string match: ``#0140`` is wrong for ``140``. The intermediate steps are not checked.
    3. ``prompts`` and extra dataset columns (``**kwargs``) are accepted and ignored.
    4. Completions may be text or chat messages (``[{"role": "assistant", "content": ...}]``).
    """
    if len(completions) != len(answer):
        raise DataError(
            f"arithmetic_correct: {len(completions)} completions but {len(answer)} answers; "
            "pass one answer per completion"
        )
    return [
        float(final_answer(completion_text(c)) == ans.strip()) for c, ans in zip(completions, answer, strict=True)
    ]


arithmetic_correct.verifies_correctness = True  # the scorer fills Groups.correct from it
