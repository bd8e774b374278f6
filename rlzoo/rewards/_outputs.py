"""What a reward function may return: one finite float (within float32) or None per completion."""

import math
from collections.abc import Sequence
from typing import Any

from rlzoo.errors import DataError

_FLOAT32_MAX = 3.4028234663852886e38  # rewards become float32 tensors


def checked_rewards(name: str, indices: Sequence[int], out: Any, g: int) -> list[float | None]:
    """A reward function's output for the completions at ``indices`` as floats or None, or a DataError
    naming the function and the completion (index, prompt and sample, ``g`` completions per prompt)."""
    if not isinstance(out, list):
        raise DataError(
            f"reward function '{name}' must return a list with one float or None per completion, "
            f"got {type(out).__name__}"
        )
    if len(out) != len(indices):
        raise DataError(
            f"reward function '{name}' returned {len(out)} rewards for {len(indices)} completions "
            f"({indices[0]}..{indices[-1]}); it must return exactly one per completion"
        )
    checked: list[float | None] = []
    for index, value in zip(indices, out, strict=True):
        where = f"completion {index} (prompt {index // g}, sample {index % g})"
        if value is None:
            checked.append(None)
            continue
        if isinstance(value, (str, bytes)) or not hasattr(type(value), "__float__"):
            raise DataError(
                f"reward function '{name}' returned {value!r} ({type(value).__name__}) for {where}; "
                "expected a float or None"
            )
        number = float(value)
        if not math.isfinite(number):
            raise DataError(
                f"reward function '{name}' returned {number} for {where}; rewards must be finite "
                "(return None for a completion that cannot be scored)"
            )
        if abs(number) > _FLOAT32_MAX:
            raise DataError(
                f"reward function '{name}' returned {number!r} for {where}, which overflows float32 (the "
                f"rewards' dtype; largest {_FLOAT32_MAX:.4g}); rescale the rewards"
            )
        checked.append(number)
    return checked
