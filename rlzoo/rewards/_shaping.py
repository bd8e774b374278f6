"""Support for reward shapers: the correctness check they share."""

from jaxtyping import Bool
from torch import Tensor

from rlzoo.errors import DataError
from rlzoo.params import component_label
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
