"""Typed parameters of components: a dataclass's fields read as :class:`Param` s, given values
checked and coerced against them (every problem of one spec in one error, with the closest names),
and the checks a component's ``__post_init__`` runs, which name the component, the parameter and
its value."""

import dataclasses
import difflib
import functools
import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any

from beartype.door import is_bearable

from rlzoo.errors import ConfigError


def type_name(hint: Any) -> str:
    """A short readable spelling of a type hint: ``float``, ``Literal['group', 'batch']``, ``int | None``."""
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("collections.abc.", "")


@dataclasses.dataclass(frozen=True)
class Param:
    """One hyper-parameter of a component: a field of its dataclass."""

    name: str
    hint: Any
    default: Any = dataclasses.MISSING

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    def __str__(self) -> str:
        text = f"{self.name}: {type_name(self.hint)}"
        return text if self.required else f"{text} = {self.default!r}"


def _edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions and adjacent swaps."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            cost = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, prev2[j - 2] + 1)
            row.append(cost)
        prev2, prev = prev, row
    return prev[-1]


def suggest(name: str, candidates: list[str], n: int = 3) -> list[str]:
    """The closest candidates to a mistyped name: fewest edits first (a swap counts once)."""
    close = difflib.get_close_matches(name, candidates, n=len(candidates), cutoff=0.5)
    return sorted(close, key=lambda c: (_edit_distance(name, c), close.index(c)))[:n]


def dataclass_params(cls: type) -> tuple[Param, ...]:
    """The init fields of a dataclass as :class:`Param` s (type hints resolved, defaults evaluated)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_"):
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        out.append(Param(f.name, hints[f.name], default))
    return tuple(out)


def validate_params(label: str, cls: type, given: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``given`` against the fields of dataclass ``cls``; every problem in one ConfigError.

    Unknown names (with the closest field), missing required fields and values of the wrong type
    are all reported, prefixed with ``label``; ints are accepted for floats and lists for tuples.
    """
    params = {p.name: p for p in dataclass_params(cls)}
    problems: list[str] = []
    kwargs: dict[str, Any] = {}
    for key, value in given.items():
        if key not in params:
            close = suggest(key, list(params), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"unknown parameter '{key}'{hint}")
            continue
        value = _coerce(value, params[key].hint)
        if not _fits(value, params[key].hint):
            options = [a for a in typing.get_args(params[key].hint) if isinstance(a, str)]
            close = suggest(value, options, n=1) if isinstance(value, str) and options else []
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(
                f"parameter '{key}' expects {type_name(params[key].hint)}, got {value!r} ({type(value).__name__}){hint}"
            )
            continue
        kwargs[key] = value
    for p in params.values():
        if p.required and p.name not in given:
            problems.append(f"missing required parameter '{p.name}' ({type_name(p.hint)})")
    if problems:
        valid = "; ".join(str(p) for p in params.values()) or "(no parameters)"
        raise ConfigError(f"{label}: " + "; ".join(problems) + f". Valid parameters: {valid}")
    return kwargs


def _accepts_bool(hint: Any) -> bool:
    """Whether a hint asks for a bool itself (beartype, like Python, counts True as an int)."""
    if hint is bool or hint is Any:
        return True
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Literal:
        return any(isinstance(a, bool) for a in args)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_accepts_bool(a) for a in args)
    return False


def _fits(value: Any, hint: Any) -> bool:
    if isinstance(value, bool) and not _accepts_bool(hint):
        return False
    return is_bearable(value, hint)


def _coerce(value: Any, hint: Any) -> Any:
    """Lossless conversions a config file needs: int -> float, list -> tuple."""
    if _fits(value, hint):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and _fits(float(value), hint):
        return float(value)
    if isinstance(value, list) and _fits(tuple(value), hint):
        return tuple(value)
    return value


def check_fields_when_built(cls: type, label: str) -> None:
    """Make ``cls(...)`` check its arguments' types and allowed values as ``build`` does, so a component
    built directly (``GRPO(scale="grup")``) fails with the same named error instead of running wrong."""
    init = cls.__init__
    if getattr(init, "_rlzoo_checked", False):
        return
    signature = inspect.signature(init)

    @functools.wraps(init)
    def checked_init(self: Any, *args: Any, **kwargs: Any) -> None:
        given = signature.bind_partial(self, *args, **kwargs).arguments
        given.pop(next(iter(signature.parameters)))  # self
        init(self, **validate_params(label, cls, given))

    checked_init._rlzoo_checked = True  # type: ignore[attr-defined]
    cls.__init__ = checked_init  # type: ignore[method-assign]


def check(component: object, param: str, ok: bool, requirement: str) -> None:
    """Raise a ConfigError naming the component, the parameter and its value unless ``ok``.

    For range checks in a component's ``__post_init__``::

        check(self, "eps", self.eps >= 0, "must be >= 0")
    """
    if not ok:
        raise ConfigError(
            f"{component_label(component)}: {param}={getattr(component, param)!r} {requirement}"
        )


def component_label(component: object) -> str:
    """``advantage estimator 'grpo'`` for a registered component, the class name otherwise."""
    cls = type(component)
    kind = getattr(cls, "component_kind", None)
    return f"{kind} '{cls.component_name}'" if kind else cls.__qualname__  # type: ignore[attr-defined]
