"""Reward functions named in text: a registered name, ``module:function`` or ``file.py:function``.

``rlzoo train --reward SPEC`` and the config file's ``reward_funcs`` list take these::

    answer_match                        # a registered reward function (rlzoo list rewards)
    answer_match@2                      # ... weighted 2 in the sum of rewards
    my_package.rewards:format_reward    # a function in an importable module
    ./my_rewards.py:fmt@0.5             # a function in a user's file, loaded by path

Implementation details:

1. ``@weight``: the text after the last ``@`` is a weight when it holds no ``/``, ``\\`` or
   ``:`` (so ``/home/me@work/r.py:fn`` keeps its ``@``); it must be a finite number (a negative
   weight is a penalty). A spec without one weighs 1.0; if no spec has one, there are no weights.
2. With a ``:``, the text after the last ``:`` names the function; what comes before it is a file
   when it ends in ``.py`` or holds a path separator, else a module to import (the current
   directory is not on the import path of the ``rlzoo`` command: write a file's path).
   Without a ``:``, the spec is a registered name, built with its defaults; a config file's
   mapping ``{name: ..., **params}`` builds a registered one with parameters.
3. A file is executed once per process, as module ``rlzoo_reward_file_<stem>_<hash of its path>``
   registered in ``sys.modules`` (dataclasses and pickling by reference work in it; the
   scorer's forked workers inherit it, spawned ones cannot import it).
4. Every spec is resolved, and every problem reported at once, before any model loads: a file
   that does not exist, a module that fails to import (with its exception), a missing attribute
   (with the callables the module defines), a class or another non-callable, a bad weight.
"""

import hashlib
import importlib
import importlib.util
import math
import re
import sys
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlzoo.errors import ConfigError
from rlzoo.params import suggest
from rlzoo.rewards import REWARD_FUNCS
from rlzoo.rewards._execution import RewardFunction

_SEPARATORS = ("/", "\\")


@dataclass(frozen=True)
class RewardSpec:
    """One reward function as a config names it, resolved: ``func`` is ready for the Scorer.

    Args:
        spec: the spec as written (a string, or a ``{name: ..., **params}`` mapping).
        func: the reward function (a registered component or the user's callable).
        weight: the ``@weight`` of the spec; None when it names none.
    """

    spec: str | Mapping[str, Any]
    func: RewardFunction
    weight: float | None = None


def resolve_reward(spec: object) -> RewardSpec:
    """Resolve one spec, a string or a mapping (see the module docstring), as a config file gives it.

    Anything else, and every spec that cannot be resolved, is a ConfigError naming the spec.
    """
    if isinstance(spec, Mapping):
        try:
            return RewardSpec(spec, REWARD_FUNCS.build(spec))
        except ConfigError as exc:
            raise ConfigError(f"reward {dict(spec)!r}: {exc}") from exc
    if not isinstance(spec, str):
        raise ConfigError(
            f"reward {spec!r}: a reward spec is a string (name, module:function or file.py:function, "
            f"optionally @weight) or a {{name: ..., **params}} mapping, got {type(spec).__name__}"
        )
    target, weight = _split_weight(spec)
    try:
        return RewardSpec(spec, _resolve_target(target), weight)
    except ConfigError as exc:
        raise ConfigError(f"reward '{spec}': {exc}") from exc


def resolve_rewards(specs: object) -> tuple[tuple[RewardFunction, ...], tuple[float, ...] | None]:
    """The functions of a list of specs and their weights (None when no spec has an ``@weight``).

    Every spec is resolved; all problems are raised together in one ConfigError, one a line.
    """
    if isinstance(specs, str | Mapping) or not isinstance(specs, Sequence):
        raise ConfigError(f"reward functions must be a list of specs, got {type(specs).__name__}: {specs!r}")
    resolved, problems = [], []
    for spec in specs:
        try:
            resolved.append(resolve_reward(spec))
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems))
    funcs = tuple(r.func for r in resolved)
    if all(r.weight is None for r in resolved):
        return funcs, None
    return funcs, tuple(1.0 if r.weight is None else r.weight for r in resolved)


def _split_weight(spec: str) -> tuple[str, float | None]:
    target, at, text = spec.rpartition("@")
    if not at or any(c in text for c in (*_SEPARATORS, ":")):
        return spec, None
    try:
        weight = float(text)
    except ValueError:
        weight = math.nan
    if not math.isfinite(weight):
        raise ConfigError(f"reward '{spec}': weight '{text}' after '@' must be a finite number")
    return target, weight


def _resolve_target(target: str) -> RewardFunction:
    source, colon, attribute = target.rpartition(":")
    is_file = (source if colon else target).endswith(".py") or any(s in source for s in _SEPARATORS)
    if not colon:
        if is_file:
            names = ", ".join(_callables(_load_file(target))) or "none"
            raise ConfigError(f"name the function to use: '{target}:FUNCTION' (callables there: {names})")
        return REWARD_FUNCS.build(target)
    if not attribute:
        raise ConfigError(f"no function named after ':' (write {source}:FUNCTION)")
    module = _load_file(source) if is_file else _import(source, attribute)
    where = f"'{source}'"
    if not hasattr(module, attribute):
        names = _callables(module)
        close = suggest(attribute, names, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{where} has no attribute '{attribute}'{hint}; callables there: {', '.join(names) or 'none'}")
    func = getattr(module, attribute)
    if isinstance(func, type):
        raise ConfigError(
            f"'{attribute}' in {where} is a class; point at a function or an instance "
            "(a reward function is called as fn(prompts, completions, **columns))"
        )
    if not callable(func):
        raise ConfigError(f"'{attribute}' in {where} is {type(func).__name__} {func!r}, not a function")
    return func


def _import(name: str, attribute: str) -> types.ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as exc:
        hint = ""
        file = Path(*name.split(".")).with_suffix(".py")
        if isinstance(exc, ImportError) and file.exists():
            hint = f" (to load the file {file} by path, write '{file}:{attribute}')"
        raise ConfigError(f"module '{name}' cannot be imported: {type(exc).__name__}: {exc}{hint}") from exc


def _load_file(path: str) -> types.ModuleType:
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ConfigError(f"file '{path}' does not exist (looked for {file})")
    stem, digest = re.sub(r"\W", "_", file.stem), hashlib.sha1(str(file).encode()).hexdigest()[:8]
    name = f"rlzoo_reward_file_{stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"file '{path}' is not a Python source file (name it *.py)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(f"file '{path}' failed to load: {type(exc).__name__}: {exc}") from exc
    return module


def _callables(module: types.ModuleType) -> list[str]:
    """The public callables a module defines itself (not those it imports)."""
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and callable(value) and getattr(value, "__module__", None) == module.__name__
    )
