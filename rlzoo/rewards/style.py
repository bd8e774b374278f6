"""Rewards on the form of a completion: ``format`` (required tags in order), ``repetition_penalty``."""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rlzoo.params import check
from rlzoo.rewards import REWARD_FUNCS
from rlzoo.text import completion_text


@REWARD_FUNCS.register("format")
@dataclass(frozen=True)
class Format:
    """Format reward: ``reward`` if ``<tag>...</tag>`` blocks for every tag appear in order, else ``penalty`` (arXiv 2501.12948).

    Implementation details:

    1. Blocks must appear in the order of ``tags``, each closed before the next opens; their
       content may be anything, newlines included.
    2. ``strict=False``: any text may surround the blocks. ``strict=True``: only whitespace may
       (open-r1's ``format_reward``: ``^<think>...</think>\\s*<answer>...</answer>$``).
    3. Defaults follow DeepSeek-R1's template (arXiv 2501.12948): ``("think", "answer")``, 1.0 / 0.0.
    """

    tags: tuple[str, ...] = ("think", "answer")
    strict: bool = False
    reward: float = 1.0
    penalty: float = 0.0

    def __post_init__(self) -> None:
        check(self, "tags", len(self.tags) > 0, "must name at least one tag")
        check(
            self,
            "tags",
            all(re.fullmatch(r"[\w:.-]+", t) for t in self.tags),
            "must be tag names such as 'think'",
        )

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
    ) -> list[float | None]:
        gap = r"\s*" if self.strict else r".*?"
        blocks = gap.join(rf"<{re.escape(t)}>.*?</{re.escape(t)}>" for t in self.tags)
        pattern = re.compile(rf"\s*{blocks}\s*" if self.strict else blocks, flags=re.DOTALL)
        match = pattern.fullmatch if self.strict else pattern.search
        return [self.reward if match(completion_text(c)) else self.penalty for c in completions]


@REWARD_FUNCS.register("repetition_penalty")
@dataclass(frozen=True)
class RepetitionPenalty:
    """N-gram repetition: max_penalty · (1 - distinct n-grams / n-grams) over lowercased words (arXiv 2502.03373).

    Implementation details:

    1. As the paper's code (``eddycmu/demystify-long-cot``, ``get_repetition_penalty``) and
       open-r1's ``get_repetition_penalty_reward``: words are ``text.lower().split()``; n-grams of
       ``ngram_size`` consecutive words; a completion with fewer than ``ngram_size`` words gets 0.
    2. Defaults: ``ngram_size=3``, ``max_penalty=-1.0`` (open-r1). 0 for no repetition, tending
       to ``max_penalty`` as a completion repeats one n-gram over and over.
    3. The paper's code adds it to wrong answers only inside its cosine reward; here it is a
       separate reward function applied to every completion (weight it in the scorer).
    """

    ngram_size: int = 3
    max_penalty: float = -1.0

    def __post_init__(self) -> None:
        check(self, "ngram_size", self.ngram_size >= 1, "must be >= 1")
        check(self, "max_penalty", self.max_penalty <= 0, "must be <= 0 (it is a penalty)")

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
    ) -> list[float | None]:
        rewards: list[float | None] = []
        for completion in map(completion_text, completions):
            words = completion.lower().split()
            ngrams = list(zip(*(words[i:] for i in range(self.ngram_size)), strict=False))
            rewards.append((1 - len(set(ngrams)) / len(ngrams)) * self.max_penalty if ngrams else 0.0)
        return rewards
