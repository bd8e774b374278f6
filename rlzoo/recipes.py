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
from rlzoo.registry import Registry, check

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


@RECIPES.register("grpo")
@dataclass(frozen=True)
class GRPORecipe(Recipe):
    """GRPO (arXiv 2402.03300): group-normalised advantage, PPO clip, k3 KL in the loss (β 0.04)."""

    kl: Spec | None = "k3"
    kl_coef: float = 0.04
    aggregation: Spec = "seq_mean_token_mean"


@RECIPES.register("dr_grpo")
@dataclass(frozen=True)
class DrGRPORecipe(Recipe):
    """Dr. GRPO (arXiv 2503.20783): A = r - mean (no std), token sum over a constant budget."""

    advantage: Spec = field(default_factory=lambda: {"name": "grpo", "scale": "none"})
    aggregation: Spec = field(
        default_factory=lambda: {"name": "seq_sum_const", "constant": "$max_completion_length"}
    )


@RECIPES.register("agpo")
@dataclass(frozen=True)
class AGPORecipe(Recipe):
    """AGPO v1 (arXiv 2503.15952): ±1 for all-equal groups, length reward for correct answers."""

    advantage: Spec = "agpo"
    shapers: tuple[Spec, ...] = ("agpo_length",)


@RECIPES.register("agpo_v3")
@dataclass(frozen=True)
class AGPOv3Recipe(Recipe):
    """AGPO v2/v3 (arXiv 2503.15952): GRPO advantage, zero-advantage tokens masked, loss floored at 0."""

    mask_zero_advantage: bool = True
    loss_floor: float | None = 0.0


@RECIPES.register("rloo")
@dataclass(frozen=True)
class RLOORecipe(Recipe):
    """RLOO (arXiv 2402.14740): leave-one-out baseline, PPO clip, optional k1 KL in the reward."""

    advantage: Spec = "rloo"
    aggregation: Spec = "seq_mean_token_mean"


@RECIPES.register("remax")
@dataclass(frozen=True)
class ReMaxRecipe(Recipe):
    """ReMax (arXiv 2310.10505): REINFORCE with the reward of a greedy completion as the baseline."""

    advantage: Spec = "remax"
    loss: Spec = "reinforce"
    aggregation: Spec = "seq_mean_token_mean"


@RECIPES.register("reinforce_rej")
@dataclass(frozen=True)
class ReinforceRejRecipe(Recipe):
    """Reinforce-Rej (arXiv 2504.11343): drop all-equal groups, A = ±1 reward, PPO clip."""

    filters: tuple[Spec, ...] = ("reinforce_rej",)
    shapers: tuple[Spec, ...] = ("binary_correct",)
    advantage: Spec = "reinforce"


@RECIPES.register("dapo")
@dataclass(frozen=True)
class DAPORecipe(Recipe):
    """DAPO (arXiv 2503.14476): dynamic sampling, clip-higher 0.28, overlong shaping, token mean.

    The overlong window is the paper's proportion (Lmax 20480, Lcache 4096 = 20%) of the run's
    generation budget; dynamic sampling refills dropped groups for up to 3 extra rounds.
    """

    filters: tuple[Spec, ...] = ("dapo",)
    shapers: tuple[Spec, ...] = (
        {"name": "dapo_overlong", "max_length": "$max_completion_length", "cache_length": "$max_completion_length*0.2"},
    )
    loss: Spec = field(default_factory=lambda: {"name": "ppo_clip", "eps_low": 0.2, "eps_high": 0.28})
    refill_rounds: int = 3


@RECIPES.register("gspo")
@dataclass(frozen=True)
class GSPORecipe(Recipe):
    """GSPO (arXiv 2507.18071): sequence-level ratio, clip 3e-4/4e-4, one value per sequence."""

    loss: Spec = "gspo"
    aggregation: Spec = "seq_mean_token_mean"


@RECIPES.register("cispo")
@dataclass(frozen=True)
class CISPORecipe(Recipe):
    """CISPO (arXiv 2506.13585): clipped, detached importance weight on -A·logp, token mean."""

    loss: Spec = "cispo"


@RECIPES.register("gvpo")
@dataclass(frozen=True)
class GVPORecipe(Recipe):
    """GVPO (arXiv 2504.19599): regress β·log-ratio on centred rewards per group (β 0.1)."""

    advantage: Spec = field(default_factory=lambda: {"name": "grpo", "scale": "none"})
    loss: Spec = "gvpo"
    aggregation: Spec = "group_token_mean"


@RECIPES.register("maxrl")
@dataclass(frozen=True)
class MaxRLRecipe(Recipe):
    """MaxRL (arXiv 2602.02710): A = (r - mean)/mean (0 where mean <= 0), PPO clip, token mean, no KL.

    The estimator is the paper's (``maxrl``, ``denominator="mean"``); the rest is what the authors'
    scripts run on verl: PPO clip 0.2, ``token-mean`` aggregation, no KL in the loss or reward.
    """

    advantage: Spec = "maxrl"


@RECIPES.register("lite_ppo")
@dataclass(frozen=True)
class LitePPORecipe(Recipe):
    """Lite PPO (arXiv 2508.08221): group mean, batch std, PPO clip, token-level mean, no KL.

    ``grpo`` with ``scale="batch"`` is exactly the paper's advantage: ``(r - mean_group) /
    (std_batch + 1e-6)`` with the unbiased std of the raw rewards of the whole step, eps 1e-6 as
    ROLL, the paper's framework (TRL's ``scale_rewards="batch"`` is the same with eps 1e-4 and its
    generation batch as the batch). Constant groups get 0; a constant batch gives 0.
    """

    advantage: Spec = field(default_factory=lambda: {"name": "grpo", "scale": "batch"})


@RECIPES.register("raft_pp")
@dataclass(frozen=True)
class RAFTPPRecipe(Recipe):
    """RAFT++ (arXiv 2504.11343): A = 1 on accepted (correct) samples, 0 otherwise, PPO clip, mean over accepted tokens.

    Combines the ``binary_correct`` shaper (±1), the ``raft`` estimator (``max(r, 0)``: 1 for a
    correct completion, 0 for a wrong one) and PPO clip 0.2 (RAFT is plain SFT on the accepted
    samples; RAFT++ adds the importance ratio and its clip). ``mask_zero_advantage`` takes the
    rejected samples out of the token-mean denominator, so the loss is normalised over the accepted
    tokens [the paper's exact normalisation is unverified].
    """

    shapers: tuple[Spec, ...] = ("binary_correct",)
    advantage: Spec = "raft"
    mask_zero_advantage: bool = True


@RECIPES.register("grpo_trl")
@dataclass(frozen=True)
class GRPOTRLRecipe(Recipe):
    """TRL 1.16's GRPOTrainer defaults: GRPO advantage with eps 1e-4, PPO clip 0.2, token mean (loss_type="dapo"), no KL.

    ``GRPOConfig`` defaults: ``scale_rewards="group"`` with TRL's unbiased std and ``+ 1e-4``;
    ``epsilon=0.2`` with ``epsilon_high`` falling back to it; ``loss_type="dapo"``, which divides the
    summed token losses by the active tokens of the whole accumulated batch (``token_mean``);
    ``beta=0.0`` (no KL, no reference model); ``top_entropy_quantile=1.0`` and
    ``off_policy_mask_threshold=None`` (no selector); ``mask_truncated_completions=False``;
    ``num_iterations=1``. Its ``use_bias_correction_kl=True`` acts once ``beta > 0``: the per-token k3
    is multiplied by the (non-detached) importance ratio, so set ``kl`` to the importance-weighted
    k3 estimator with ``kl_coef=beta`` (plain ``k3`` is TRL's ``use_bias_correction_kl=False``).
    Differences: rlzoo clamps the log-ratio at ±20 and gives all-equal groups exactly 0.
    """

    advantage: Spec = field(default_factory=lambda: {"name": "grpo", "eps": 1e-4})


@RECIPES.register("gmpo")
@dataclass(frozen=True)
class GMPORecipe(Recipe):
    """GMPO (arXiv 2507.20673): GRPO advantage, geometric-mean sequence ratio clipped in log space (0.4), mean over sequences.

    The loss is sequence-level, so it is averaged over sequences (``seq_mean_token_mean``), as the
    paper's mean over L_i. No KL: TRL's ``GMPOConfig`` has β = 0 (verl's example adds a low-variance
    KL with coefficient 0.001: ``kl=k3, kl_coef=0.001``).
    """

    loss: Spec = "gmpo"
    aggregation: Spec = "seq_mean_token_mean"


@RECIPES.register("dppo")
@dataclass(frozen=True)
class DPPORecipe(Recipe):
    """DPPO (arXiv 2602.04879): GRPO advantage, the binary-TV trust-region mask (0.2) instead of the ratio clip, token mean.

    ``dppo_tv`` as SkyRL and prime-rl (no cap on the ratio, the paper's advice), anchored to
    ``old_logp``; the paper anchors to the behaviour policy: ``loss.anchor=rollout`` when the engine
    returns its log-probs. ``loss=dppo_kl`` is the binary-KL variant (0.05).
    """

    loss: Spec = "dppo_tv"


@RECIPES.register("clip_cov")
@dataclass(frozen=True)
class ClipCovRecipe(Recipe):
    """Clip-Cov (arXiv 2505.22617): GRPO advantage, PPO clip with a random 2e-4 of high-covariance tokens detached, token mean.

    The authors' recipes loosen PPO's clip to [0, 2] (ε = 1) next to Clip-Cov, as here; they ran it
    inside DAPO's recipe (add ``filters=[dapo]`` and its overlong shaper for that).
    """

    loss: Spec = field(default_factory=lambda: {"name": "clip_cov", "eps_low": 1.0, "eps_high": 1.0})


@RECIPES.register("kl_cov")
@dataclass(frozen=True)
class KLCovRecipe(Recipe):
    """KL-Cov (arXiv 2505.22617): GRPO advantage, -A·r with a |logp - old_logp| penalty (β 1) on the top 2e-4 tokens by covariance, token mean.

    No ratio clip (KL-Cov replaces it). The fraction is verl's and the authors' 32B value (0.02 %);
    their 7B runs used 0.2 % (``loss.fraction=2e-3``).
    """

    loss: Spec = "kl_cov"


@RECIPES.register("luspo")
@dataclass(frozen=True)
class LUSPORecipe(Recipe):
    """LUSPO (arXiv 2602.05261): GRPO advantage, GSPO's clipped sequence ratio (2e-3 / 2.5e-3) weighted by length: Σ_i |o_i|·ℓ_i / B.

    ``seq_mean_token_sum`` turns the per-sequence loss on every token into the paper's
    length-weighted mean, as TRL's ``loss_type="luspo"``.
    """

    loss: Spec = "luspo"
    aggregation: Spec = "seq_mean_token_sum"


@RECIPES.register("vespo")
@dataclass(frozen=True)
class VESPORecipe(Recipe):
    """VESPO (arXiv 2602.10693): GRPO advantage, -φ(w)·A·logp with a gamma-shaped weight of the sequence ratio, token mean.

    TRL's defaults (k, λ) = (2, 3) for A >= 0 and (3, 2) for A < 0, aggregated like its ``dapo``.
    """

    loss: Spec = "vespo"
