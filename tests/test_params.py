"""Component parameters read from dataclass fields, checked and coerced, and the checks that name them."""

from dataclasses import dataclass
from typing import Literal

import pytest

from rlzoo.errors import ConfigError
from rlzoo.params import check, component_label, dataclass_params, suggest, validate_params


@dataclass(frozen=True)
class Knobs:
    width: int
    scale: float = 1.0
    mode: Literal["group", "batch"] = "group"
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check(self, "scale", self.scale > 0, "must be > 0")


def test_fields_become_params_with_their_hints_and_defaults() -> None:
    params = {p.name: p for p in dataclass_params(Knobs)}
    assert params["width"].required and not params["scale"].required
    assert str(params["mode"]) == "mode: Literal['group', 'batch'] = 'group'"


def test_every_problem_is_reported_at_once_and_values_are_coerced() -> None:
    assert validate_params("knobs", Knobs, {"width": 2, "scale": 3, "names": ["a"]}) == {
        "width": 2, "scale": 3.0, "names": ("a",)}  # int -> float, list -> tuple
    with pytest.raises(ConfigError) as info:
        validate_params("knobs", Knobs, {"widht": 2, "mode": "grup", "scale": True})
    text = str(info.value)
    assert text.startswith("knobs: unknown parameter 'widht' (did you mean 'width'?)")
    assert "parameter 'mode' expects Literal['group', 'batch'], got 'grup' (str) (did you mean 'group'?)" in text
    assert "parameter 'scale' expects float, got True (bool)" in text  # a bool is not a number here
    assert "missing required parameter 'width' (int)" in text


def test_a_check_names_the_component_the_parameter_and_its_value() -> None:
    with pytest.raises(ConfigError, match=r"^Knobs: scale=-1.0 must be > 0$"):
        Knobs(width=1, scale=-1.0)
    assert component_label(Knobs(width=1)) == "Knobs"


def test_suggestions_rank_a_swap_first() -> None:
    assert suggest("gpro", ["gvpo", "gspo", "grpo", "agpo"])[0] == "grpo"
    assert suggest("zzzz", ["grpo"]) == []
