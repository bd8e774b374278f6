"""Recipes: named, complete combinations of registered components (ALGORITHMS.md §5).

A recipe names no new code path: it is a frozen dataclass of component specs. Every named recipe
is a subclass of :class:`Recipe` that only changes defaults, so every field can be overridden::

    rlzoo.recipes.build("agpo")
    rlzoo.recipes.build("dapo", loss={"name": "ppo_clip", "eps_high": 0.3})
    rlzoo.recipes.build("grpo").override(["loss.eps_high=0.28", "kl_coef=0"])

A parameter that depends on the run's generation budget is written ``"$max_completion_length"``
(or ``"$max_completion_length*0.2"``, rounded to an integer); the trainer resolves it from its
config, so Dr. GRPO's constant and DAPO's overlong window follow the budget of the run.
"""

import dataclasses
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from rlzoo import advantages, losses, rewards, yamlio
from rlzoo.errors import ConfigError
from rlzoo.params import check
from rlzoo.registry import Registry

RECIPES: Registry = Registry("recipe", entry_point_group="rlzoo.recipes")
build = RECIPES.build

Spec = str | Mapping[str, Any]

# The run-dependent values a spec may refer to, with the stand-ins used to validate a recipe alone.
CONTEXT_DEFAULTS: dict[str, int] = {"max_completion_length": 1024}
_REFERENCE = re.compile(r"^\$(\w+)(?:\*([0-9.]+))?$")


def resolve(spec: Any, context: Mapping[str, int]) -> Any:
    """Replace ``"$name"`` / ``"$name*factor"`` strings inside a spec by values from ``context``."""
    if isinstance(spec, Mapping):
        return {k: resolve(v, context) for k, v in spec.items()}
    if isinstance(spec, list | tuple):
        return type(spec)(resolve(v, context) for v in spec)
    match = _REFERENCE.match(spec) if isinstance(spec, str) else None
    if match is None:
        return spec
    name, factor = match.groups()
    if name not in context:
        raise ConfigError(f"recipe: '{spec}' refers to an unknown run value; known: {', '.join(sorted(context))}")
    return context[name] if factor is None else round(context[name] * float(factor))


@dataclass(frozen=True)
class Parts:
    """A recipe's components, built: what the trainer runs."""

    estimator: Any
    filters: tuple[Any, ...]
    shapers: tuple[Any, ...]
    objective: Any
    reward_kl: Any | None
    reward_kl_coef: float
    refill_rounds: int

    @property
    def needs_verdict(self) -> bool:
        """Some part reads ``groups.correct``: the run needs a source of correctness."""
        return any(getattr(c, "needs_verdict", False) for c in (*self.shapers, *self.filters, self.estimator))

    @property
    def needs_greedy_baseline(self) -> bool:
        """The estimator reads ``groups.greedy_rewards`` (one greedy completion per prompt)."""
        return getattr(self.estimator, "needs_greedy_baseline", False)


@RECIPES.register("custom")
@dataclass(frozen=True)
class Recipe:
    """A combination you choose: every part is a field (the base of every named recipe)."""

    advantage: Spec = "grpo"
    filters: tuple[Spec, ...] = ()
    shapers: tuple[Spec, ...] = ()
    loss: Spec = "ppo_clip"
    aggregation: Spec = "token_mean"
    selectors: tuple[Spec, ...] = ()
    correction: Spec | None = None
    kl: Spec | None = None
    kl_coef: float = 0.0
    reward_kl: Spec | None = None
    reward_kl_coef: float = 0.0
    entropy_coef: float = 0.0
    mask_zero_advantage: bool = False
    loss_floor: float | None = None
    floor_scope: Literal["microbatch", "group"] = "microbatch"
    refill_rounds: int = field(default=0)

    def __post_init__(self) -> None:
        check(self, "refill_rounds", self.refill_rounds >= 0, "must be >= 0")
        check(self, "reward_kl_coef", self.reward_kl_coef >= 0, "must be >= 0")
        self.build_parts()  # fail now, not mid-training

    def build_parts(self, context: Mapping[str, int] | None = None) -> Parts:
        """Build every component; a combination that cannot work raises a ConfigError here.

        ``context`` holds the run values specs may refer to (``$max_completion_length``).
        """
        ctx = CONTEXT_DEFAULTS | dict(context or {})
        estimator = advantages.build(resolve(self.advantage, ctx))
        filters = tuple(advantages.build_filter(resolve(f, ctx)) for f in self.filters)
        shapers = tuple(rewards.build_shaper(resolve(s, ctx)) for s in self.shapers)
        objective = losses.Objective(
            policy=resolve(self.loss, ctx),
            aggregation=resolve(self.aggregation, ctx),
            kl=self.kl,
            kl_coef=self.kl_coef,
            entropy_coef=self.entropy_coef,
            mask_zero_advantage=self.mask_zero_advantage,
            loss_floor=self.loss_floor,
            floor_scope=self.floor_scope,
            selectors=tuple(resolve(s, ctx) for s in self.selectors),
            correction=None if self.correction is None else resolve(self.correction, ctx),
        )
        reward_kl = None if self.reward_kl is None else losses.build_kl(self.reward_kl)
        if getattr(reward_kl, "needs_old_logp", False):
            raise ConfigError(
                f"recipe '{self.name}': reward_kl={self.reward_kl!r} is importance-weighted (it needs the old "
                "log-probs and a gradient), a loss term; use it as kl=... with kl_coef, or k1/k2/k3 as reward_kl"
            )
        for f in filters:
            if getattr(estimator, "acts_on_all_equal_groups", False) and getattr(f, "removes_all_equal_groups", False):
                warnings.warn(
                    f"recipe '{self.name}': the {type(f).component_name} filter removes the all-equal groups "
                    f"that the {type(estimator).component_name} estimator's all-equal rule acts on; the rule is inert",
                    stacklevel=3,
                )
        return Parts(estimator, filters, shapers, objective, reward_kl, self.reward_kl_coef, self.refill_rounds)

    @property
    def name(self) -> str:
        return type(self).component_name  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        """The spec, plain data: ``RECIPES.build(recipe.to_dict())`` rebuilds it."""
        return {"name": self.name, **_plain(dataclasses.asdict(self))}

    def show(self) -> str:
        """YAML a person can read and paste into a config file."""
        doc = (type(self).__doc__ or "").strip()
        return f"# {self.name}: {doc.splitlines()[0] if doc else ''}\n" + yaml.safe_dump(
            self.to_dict(), sort_keys=False
        )

    def override(self, assignments: Iterable[str]) -> "Recipe":
        """Apply ``key=value`` or ``part.param=value`` assignments (values parsed as YAML, ``1e-3`` a float).

        ``loss.eps_high=0.28`` turns ``loss: ppo_clip`` into ``{name: ppo_clip, eps_high: 0.28}``;
        ``shapers.0.alpha=0.2`` reaches into a list. All problems are reported at once.
        """
        spec = self.to_dict()
        problems = []
        for assignment in assignments:
            key, sep, raw = assignment.partition("=")
            if not sep or not key:
                problems.append(f"'{assignment}' is not key=value")
                continue
            try:
                _assign(spec, key.split("."), yamlio.load(raw))
            except (KeyError, IndexError, TypeError) as exc:
                problems.append(f"'{assignment}': {exc}")
        if problems:
            raise ConfigError(f"recipe '{self.name}' overrides: " + "; ".join(problems))
        return RECIPES.build(spec)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _assign(spec: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``spec[path] = value``, promoting a bare component name to ``{"name": ...}`` on the way."""
    node: Any = spec
    for depth, key in enumerate(path[:-1]):
        child = node[int(key)] if isinstance(node, list) else node.get(key, KeyError)
        if child is KeyError:
            raise KeyError(f"no field '{key}' (fields: {', '.join(node)})")
        if isinstance(child, str):
            child = {"name": child}
        elif child is None:
            raise TypeError(f"'{'.'.join(path[: depth + 1])}' is None; set it to a component name first")
        if isinstance(node, list):
            node[int(key)] = child
        else:
            node[key] = child
        node = child
    last = path[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


from rlzoo import named_recipes  # noqa: E402,F401  (registers the named recipes)
