"""Support for reward shapers: the correctness check they share and composition in order."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jaxtyping import Bool
from torch import Tensor

from rlzoo.errors import DataError
from rlzoo.registry import component_label
from rlzoo.rewards import SHAPERS
from rlzoo.types import Groups


def valid_correct(shaper: object, groups: Groups) -> Bool[Tensor, "n g"]:
    """``groups.correct & groups.mask``; a DataError naming the shaper when the verdict is unknown."""
    if groups.correct is None:
        raise DataError(
            f"{component_label(shaper)}: groups.correct is None, but this shaper needs the verifier's "
            "verdict; score with a reward function that has verifies_correctness = True "
            "(e.g. 'answer_match' or 'math_verify')"
        )
    return groups.correct & groups.mask


Shaper = Callable[[Groups], Groups]  # rlzoo.types.RewardShaper, in a form beartype can check


@dataclass(frozen=True)
class ShaperChain:
    """Shapers applied one after the other, in order."""

    shapers: tuple[Shaper, ...]

    def __call__(self, groups: Groups) -> Groups:
        for shaper in self.shapers:
            groups = shaper(groups)
        return groups


def compose_shapers(shapers: Sequence[Shaper | str | Mapping[str, Any]]) -> ShaperChain:
    """One shaper that applies ``shapers`` in order (names and specs are built through SHAPERS)."""
    return ShaperChain(tuple(s if callable(s) else SHAPERS.build(s) for s in shapers))
