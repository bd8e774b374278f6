"""One generic registry class; every kind of component has its own instance.

A component is a frozen dataclass whose fields are its hyper-parameters::

    ESTIMATORS = Registry("advantage estimator", entry_point_group="rlzoo.advantages")

    @ESTIMATORS.register("grpo", aliases=("group_norm",))
    @dataclass(frozen=True)
    class GRPO:
        '''Group-relative advantage: A = (r - mean) / (std + eps).'''
        eps: float = 1e-6

    ESTIMATORS.build("grpo")                      # defaults
    ESTIMATORS.build("grpo", eps=1e-4)            # keyword overrides
    ESTIMATORS.build({"name": "grpo", "eps": 1e-4})

Unknown names fail with the closest matches and the full list; unknown, missing or ill-typed
parameters fail naming the component and its valid parameters, every problem of one spec at once.
Third-party packages add components through the entry-point group of the kind (an entry point
``name = "package.module:Class"``); they are loaded the first time the registry is asked for names.

A registry made with ``functions=True`` (the reward functions: TRL's are plain functions) also
takes a plain callable, a function or a callable instance, as a component without parameters::

    @REWARD_FUNCS.register("fmt")
    def fmt(prompts, completions, **columns): ...

    REWARD_FUNCS.build("fmt") is fmt               # the function itself
"""

import dataclasses
import fnmatch
import importlib.metadata
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from rlzoo.errors import ConfigError
from rlzoo.params import Param, check_fields_when_built, dataclass_params, suggest, validate_params

T = TypeVar("T")
C = TypeVar("C")

_NATURAL = re.compile(r"(\d+)")


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in _NATURAL.split(name)]


@dataclasses.dataclass(frozen=True)
class Entry(Generic[T]):
    """What a registry knows of one component: ``cls`` is its frozen dataclass, or the callable itself."""

    name: str
    cls: Any
    aliases: tuple[str, ...]
    kind: str

    @property
    def is_function(self) -> bool:
        """A plain callable registered as it is (no parameters; building it returns it)."""
        return not isinstance(self.cls, type)

    @property
    def summary(self) -> str:
        doc = (self.cls.__doc__ or "").strip()
        return doc.splitlines()[0].strip() if doc else ""

    @property
    def params(self) -> tuple[Param, ...]:
        return () if self.is_function else dataclass_params(self.cls)

    def describe(self) -> str:
        """Multi-line description: name, aliases, summary and one line per parameter."""
        head = self.name + (f" (aliases: {', '.join(self.aliases)})" if self.aliases else "")
        lines = [f"{head} — {self.summary}" if self.summary else head]
        lines += [f"    {p}" for p in self.params] or ["    (no parameters)"]
        return "\n".join(lines)


class Registry(Generic[T]):
    """Named components of one kind, with aliases, validated construction and plugins.

    Args:
        kind: what the components are, as a person says it ("advantage estimator"); used in errors.
        entry_point_group: the Python entry-point group third-party packages register under.
        functions: also accept plain callables (functions, callable instances) as components.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None, *, functions: bool = False) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.functions = functions
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}
        self._plugins_loaded = entry_point_group is None

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"

    # -- registration -------------------------------------------------------------------------

    def register(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[C], C]:
        """Decorator: register a frozen dataclass (or, with ``functions=True``, a function) under ``name``."""

        def decorate(obj: C) -> C:
            self._add(name, obj, aliases)
            return obj

        return decorate

    def _add(self, name: str, obj: Any, aliases: tuple[str, ...], origin: str = "") -> None:
        """Register ``obj``; ``origin`` (the plugin it came from) goes into the errors."""
        is_class = isinstance(obj, type)
        frozen = is_class and dataclasses.is_dataclass(obj) and obj.__dataclass_params__.frozen  # type: ignore[attr-defined]
        if not (frozen or (self.functions and not is_class and callable(obj))):
            wanted = "a frozen dataclass" + (" or a function" if self.functions else "")
            how = " (decorate it with @dataclass(frozen=True) below the register decorator)" if is_class else ""
            label = getattr(obj, "__qualname__", repr(obj))
            raise ConfigError(
                f"{self.kind} '{name}'{origin}: {label} ({'class' if is_class else type(obj).__name__}) "
                f"must be {wanted}{how}"
            )
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                owner = self._entries.get(key) or self._entries[self._aliases[key]]
                raise ConfigError(
                    f"{self.kind} '{key}'{origin} is already registered (by {owner.cls.__module__}."
                    f"{_qualname(owner.cls)}); pick another name"
                )
        self._entries[name] = Entry(name, obj, tuple(aliases), self.kind)
        for alias in aliases:
            self._aliases[alias] = name
        if is_class:  # a function is registered as it is, unchanged
            obj.component_name = name
            obj.component_kind = self.kind
            check_fields_when_built(obj, f"{self.kind} '{name}'")

    def copy(self) -> "Registry[T]":
        """An independent registry with the same entries (for tests and experiments)."""
        other: Registry[T] = Registry(self.kind, self.entry_point_group, functions=self.functions)
        self._load_plugins()
        other._entries = dict(self._entries)
        other._aliases = dict(self._aliases)
        other._plugins_loaded = True
        return other

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in importlib.metadata.entry_points(group=self.entry_point_group):
            try:
                obj = ep.load()
            except Exception as exc:
                raise ConfigError(
                    f"{self.kind} plugin '{ep.name}' ({ep.value}, entry point group "
                    f"'{self.entry_point_group}') failed to import: {type(exc).__name__}: {exc}"
                ) from exc
            if ep.name in self._entries and self._entries[ep.name].cls is obj:
                continue  # the module registered it itself on import
            self._add(ep.name, obj, (), origin=f" (plugin {ep.value}, entry point group '{self.entry_point_group}')")

    # -- lookup -------------------------------------------------------------------------------

    def names(self, pattern: str | None = None) -> list[str]:
        """Registered names (aliases excluded), naturally sorted, optionally filtered by a glob."""
        self._load_plugins()
        names = sorted(self._entries, key=_natural_key)
        return [n for n in names if pattern is None or fnmatch.fnmatchcase(n, pattern)]

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[Entry[T]]:
        return (self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self.names())

    def get(self, name: str) -> Entry[T]:
        """The entry for a name or alias; an unknown name fails with suggestions."""
        self._load_plugins()
        if not isinstance(name, str):
            raise ConfigError(f"{self.kind} name must be a string, got {name!r}")
        key = self._aliases.get(name, name)
        if key in self._entries:
            return self._entries[key]
        known = self.names()
        close = suggest(name, known + list(self._aliases))
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        listing = ", ".join(known) if known else "(none registered)"
        raise ConfigError(f"unknown {self.kind} '{name}'{hint} known: {listing}")

    def describe(self, name: str) -> str:
        return self.get(name).describe()

    # -- construction -------------------------------------------------------------------------

    def build(self, spec: "str | Mapping[str, Any] | T", **params: Any) -> T:
        """Build a component from a name, a ``{"name": ..., **params}`` mapping or an instance.

        Keyword ``params`` override those in the mapping. An instance of a registered class is
        returned as it is (with ``params`` applied through :func:`dataclasses.replace`). A function
        entry builds to the function itself and takes no ``params``.
        """
        if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
            if getattr(type(spec), "component_kind", None) != self.kind:
                raise ConfigError(f"expected a {self.kind}, got {type(spec).__qualname__}")
            if not params:
                return spec
            spec = {"name": type(spec).component_name, **dataclasses.asdict(spec)}  # type: ignore[attr-defined]
        if isinstance(spec, str):
            name, given = spec, dict(params)
        elif isinstance(spec, Mapping):
            if "name" not in spec:
                raise ConfigError(
                    f"a {self.kind} spec needs a 'name' key, got keys {sorted(spec)}; "
                    f"known names: {', '.join(self.names())}"
                )
            given = {k: v for k, v in spec.items() if k != "name"} | params
            name = spec["name"]
        else:
            raise ConfigError(
                f"a {self.kind} spec must be a name, a mapping with a 'name' key or a built "
                f"component, got {type(spec).__name__}: {spec!r}"
            )
        entry = self.get(name)
        if entry.is_function:
            if given:
                raise ConfigError(
                    f"{self.kind} '{entry.name}' is a plain function ({_qualname(entry.cls)}) and takes no "
                    f"parameters, got {', '.join(sorted(given))}"
                )
            return entry.cls
        kwargs = validate_params(f"{self.kind} '{entry.name}'", entry.cls, given)
        try:
            return entry.cls(**kwargs)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.kind} '{entry.name}': {exc}") from exc


def _qualname(obj: Any) -> str:
    """A class's or function's qualified name; a callable instance's class name."""
    return getattr(obj, "__qualname__", type(obj).__qualname__)
