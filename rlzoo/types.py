"""The typed values that flow between components.

Shape vocabulary, one for the whole package: ``n`` prompts, ``g`` completions per prompt, ``b``
sequences in a micro-batch, ``t`` completion tokens, ``v`` vocabulary, ``k`` groups in an optimiser
step. Masks are boolean and True means the element counts.

Shapes are jaxtyping annotations; the test suite checks them at run time for the whole package
(``--jaxtyping-packages=rlzoo,beartype.beartype``); outside the tests they cost nothing.
"""

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import torch
from jaxtyping import Bool, Float, Int, Shaped
from torch import Tensor

from rlzoo.errors import DataError

__all__ = [
    "AdvantageEstimator",
    "GroupFilter",
    "Groups",
    "LossOutput",
    "LossTotals",
    "PolicyBatch",
    "PolicyObjective",
    "RewardShaper",
    "Selection",
    "TokenSelector",
    "ensure_finite",
]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def ensure_finite(values: Tensor, mask: Tensor | None, who: str, what: str) -> None:
    """Raise a DataError naming ``who``, ``what`` and the first non-finite position where mask is True.

    One reduction when everything is finite (a sum is finite only if its terms are, unless it
    overflows); the precise elementwise check and the position search run only otherwise.
    """
    total = (values if mask is None else torch.where(mask, values, 0)).sum()
    if bool(torch.isfinite(total)):
        return
    bad = ~torch.isfinite(values)
    if mask is not None:
        bad &= mask
    if bool(bad.any()):
        pos = tuple(int(i) for i in bad.nonzero()[0])
        index = ", ".join(map(str, pos))
        raise DataError(
            f"{who}: {what}[{index}] is {values[pos].item()} — non-finite values are not allowed "
            f"where the mask is True; mark completions that cannot be scored invalid instead"
        )


def _float_compute(x: Tensor) -> Tensor:
    """Floating tensors keep float32/float64; bool, integer and half-precision inputs become float32."""
    if x.dtype in _LOW_PRECISION or not x.is_floating_point():
        return x.float()
    return x


@dataclass(frozen=True, eq=False)
class Groups:
    """The ``n`` prompts × ``g`` completions of one step, as dense ``[n, g]`` tensors.

    Args:
        rewards: scalar reward per completion. Half-precision, integer and bool rewards are
            converted to float32, so every estimator computes in at least float32.
        lengths: completion tokens (EOS included, padding excluded), an integer tensor.
        mask: which completions are valid (True). Invalid ones (padding of ragged groups,
            unscorable, filtered out) get advantage 0 and move no other completion's statistics.
            Their rewards may be anything, NaN included. Default: all valid.
        correct: the verifier's verdict where known; length shapers and filters read it.
        greedy_rewards: reward of one greedy completion per prompt (ReMax's baseline).

    After construction ``rewards`` is floating (float32 or float64) and ``lengths`` an integer tensor.
    """

    rewards: Shaped[Tensor, "n g"]
    lengths: Shaped[Tensor, "n g"]
    mask: Bool[Tensor, "n g"] | None = None
    correct: Bool[Tensor, "n g"] | None = None
    greedy_rewards: Float[Tensor, " n"] | None = None

    def __post_init__(self) -> None:
        rewards = torch.as_tensor(self.rewards)
        if rewards.ndim != 2:
            raise DataError(f"Groups: rewards must be [n, g], got shape {tuple(rewards.shape)}")
        rewards = _float_compute(rewards)
        object.__setattr__(self, "rewards", rewards)
        shape = tuple(rewards.shape)
        lengths = torch.as_tensor(self.lengths, device=rewards.device)
        if lengths.is_floating_point() or lengths.dtype == torch.bool:
            raise DataError(
                f"Groups: lengths must be an integer tensor, got {lengths.dtype}; pass lengths.long()"
            )
        mask = torch.ones(shape, dtype=torch.bool, device=rewards.device) if self.mask is None else self.mask
        for name, value, dtype in (
            ("lengths", lengths, None),
            ("mask", mask, torch.bool),
            ("correct", self.correct, torch.bool),
        ):
            if value is None:
                continue
            if tuple(value.shape) != shape:
                raise DataError(
                    f"Groups: {name} has shape {tuple(value.shape)}, rewards {shape}; they must match"
                )
            if dtype is not None and value.dtype != dtype:
                raise DataError(f"Groups: {name} must be a bool tensor, got {value.dtype}")
            if value.device != rewards.device:
                raise DataError(f"Groups: {name} is on {value.device}, rewards on {rewards.device}")
        object.__setattr__(self, "lengths", lengths)
        object.__setattr__(self, "mask", mask)
        if self.greedy_rewards is not None:
            greedy = _float_compute(self.greedy_rewards)
            if tuple(greedy.shape) != shape[:1]:
                raise DataError(
                    f"Groups: greedy_rewards must be [n] = [{shape[0]}], got {tuple(greedy.shape)}"
                )
            ensure_finite(greedy, None, "Groups", "greedy_rewards")
            object.__setattr__(self, "greedy_rewards", greedy)
        ensure_finite(rewards, mask, "Groups", "rewards")
        if lengths.numel() and int(torch.where(mask, lengths, 0).amin()) < 0:
            raise DataError("Groups: lengths must be >= 0 where the mask is True")

    @property
    def n(self) -> int:
        return self.rewards.shape[0]

    @property
    def g(self) -> int:
        return self.rewards.shape[1]

    def replace(self, **changes: Tensor | None) -> "Groups":
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, eq=False)
class LossTotals:
    """Normalisers of one optimiser step: sums over every micro-batch and process.

    A policy objective counts them for a micro-batch (:meth:`PolicyObjective.totals`); the trainer
    adds the counts of all micro-batches, reduces them across processes and hands the sum back in
    :attr:`PolicyBatch.totals`, so the summed micro-batch gradients equal the full-batch gradient.

    Args:
        tokens: tokens that count in the loss.
        sequences: sequences that count in the loss.
        group_tokens: tokens that count, per group id (``PolicyBatch.group_ids``).
    """

    tokens: Float[Tensor, ""]
    sequences: Float[Tensor, ""]
    group_tokens: Float[Tensor, " k"]

    @property
    def groups(self) -> Tensor:
        """Groups with at least one token that counts."""
        return (self.group_tokens > 0).sum().to(self.tokens.dtype)

    def __add__(self, other: "LossTotals") -> "LossTotals":
        return self.map(lambda a, b: a + b, other)

    def map(self, fn: Callable[..., Tensor], *others: "LossTotals") -> "LossTotals":
        """Apply ``fn`` field by field (e.g. an all-reduce across processes)."""
        return LossTotals(
            **{
                f.name: fn(getattr(self, f.name), *(getattr(o, f.name) for o in others))
                for f in dataclasses.fields(self)
            }
        )


@dataclass(frozen=True, eq=False)
class PolicyBatch:
    """What a policy objective needs for one micro-batch of ``b`` sequences of ``t`` tokens.

    Args:
        logp: log-probs of the sampled tokens under the current policy (with gradient).
        old_logp: the same under the policy that sampled them (no gradient).
        mask: True on real completion tokens.
        advantages: one per sequence ``[b]`` or one per token ``[b, t]``.
        ref_logp: log-probs under the frozen reference policy, when a KL term needs them.
        entropy: per-token entropy of the current policy, when a term or a metric needs it.
        rewards: the sequence rewards, for objectives that regress on them (GVPO).
        group_ids: which group (prompt) of the optimiser step each sequence belongs to.
        totals: normalisers of the whole optimiser step; None means this batch is the whole step.
        rollout_logp: log-probs of the sampled tokens as the inference engine reported them when it
            sampled (vLLM's), when the generator returns them; parts that read them
            (``Objective.needs_rollout_logp``) fall back to ``old_logp`` when None.
        entropy_threshold: the entropy quantile of the whole optimiser step (every micro-batch and
            process) that top-ρ entropy selection keeps tokens above, computed by
            ``Objective.entropy_threshold`` (``+inf`` when the step has no counted token); None: each
            micro-batch's own quantile is used (see ``rlzoo.selectors``).
    """

    logp: Float[Tensor, "b t"]
    old_logp: Float[Tensor, "b t"]
    mask: Bool[Tensor, "b t"]
    advantages: Float[Tensor, " b"] | Float[Tensor, "b t"]
    ref_logp: Float[Tensor, "b t"] | None = None
    entropy: Float[Tensor, "b t"] | None = None
    rewards: Float[Tensor, " b"] | None = None
    group_ids: Int[Tensor, " b"] | None = None
    totals: LossTotals | None = None
    rollout_logp: Float[Tensor, "b t"] | None = None
    entropy_threshold: Float[Tensor, ""] | None = None

    def __post_init__(self) -> None:
        shape = tuple(self.logp.shape)
        for name in ("old_logp", "mask", "ref_logp", "entropy", "rollout_logp"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != shape:
                raise DataError(
                    f"PolicyBatch: {name} has shape {tuple(value.shape)}, logp {shape}; they must match"
                )
        if self.mask.dtype != torch.bool:
            raise DataError(f"PolicyBatch: mask must be a bool tensor, got {self.mask.dtype}")
        if tuple(self.advantages.shape) not in (shape, shape[:1]):
            raise DataError(
                f"PolicyBatch: advantages must be [b] or [b, t] with b, t = {shape}, "
                f"got {tuple(self.advantages.shape)}"
            )
        for name in ("rewards", "group_ids"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != shape[:1]:
                raise DataError(f"PolicyBatch: {name} must be [b] = [{shape[0]}], got {tuple(value.shape)}")
        for name in ("logp", "old_logp", "ref_logp", "rollout_logp"):
            value = getattr(self, name)
            if value is not None and (name == "logp" or not _same_tensor(value, self.logp)):  # on-policy: old is logp
                ensure_finite(value.detach(), self.mask, "PolicyBatch", name)
        if self.entropy_threshold is not None and bool(torch.isnan(self.entropy_threshold)):
            raise DataError("PolicyBatch: entropy_threshold is NaN; pass +inf when the step has no counted token")
        ensure_finite(
            self.advantages.detach(),
            self.mask if self.advantages.ndim == 2 else None,
            "PolicyBatch",
            "advantages",
        )

    @property
    def token_advantages(self) -> Float[Tensor, "b t"]:
        """Advantages broadcast to one per token."""
        return self.advantages if self.advantages.ndim == 2 else self.advantages[:, None].expand_as(self.logp)

    def replace(self, **changes: object) -> "PolicyBatch":
        """A copy with some fields changed, validated again unless only ``totals`` changed (nothing checks it)."""
        changed = {k for k, v in changes.items() if k not in _POLICY_FIELDS or v is not getattr(self, k)}
        if not changed <= {"totals"}:
            return dataclasses.replace(self, **changes)
        copy = object.__new__(PolicyBatch)
        copy.__dict__.update(self.__dict__, **changes)
        return copy


_POLICY_FIELDS = frozenset(f.name for f in dataclasses.fields(PolicyBatch))


def _same_tensor(a: Tensor, b: Tensor) -> bool:
    """The same values (one a view of the other's memory, e.g. ``b.detach()``), so checked once."""
    return a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride() and a.dtype == b.dtype


@dataclass(frozen=True)
class LossOutput:
    """A scalar loss to minimise and detached scalar metrics (tensors; ``.item()`` once per step)."""

    loss: Float[Tensor, ""]
    metrics: Mapping[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Selection:
    """What a token selector returns: the counted tokens that keep their policy loss, and metrics.

    Args:
        keep: True where the token's policy loss counts; always False where the batch's mask is.
        metrics: detached scalar tensors (micro-batch means; NaN when there is nothing to measure).
    """

    keep: Bool[Tensor, "b t"]
    metrics: Mapping[str, Tensor] = field(default_factory=dict)


@runtime_checkable
class TokenSelector(Protocol):
    """``batch -> Selection``: which counted tokens keep their per-token policy loss.

    The :class:`~rlzoo.losses.Objective` multiplies the policy loss by the keep mask of every
    selector (their AND); loss denominators still count every token of the mask, and the KL term is
    never masked. Optional class markers (absent = False): ``needs_entropy`` (reads
    ``batch.entropy``), ``needs_entropy_threshold`` (reads ``batch.entropy_threshold`` and offers
    ``threshold(entropies) -> Tensor`` to compute it over the whole step), ``uses_rollout_logp``
    (reads ``batch.rollout_logp`` when given), ``masks_entropy_bonus`` (its keep mask also gates the
    entropy bonus).
    """

    def __call__(self, batch: PolicyBatch) -> Selection: ...


@runtime_checkable
class AdvantageEstimator(Protocol):
    """``groups -> advantages [n, g]``; zero where ``groups.mask`` is False.

    Optional class markers (absent = False): ``couples_groups`` — one group's advantages depend on
    other groups (batch-level statistics); ``acts_on_all_equal_groups`` — the estimator gives
    all-equal groups a signal (AGPO), which a filter that removes them makes inert.
    """

    def __call__(self, groups: Groups) -> Float[Tensor, "n g"]: ...


@runtime_checkable
class GroupFilter(Protocol):
    """``groups -> keep [n, g]``.

    ``mode="drop"``: completions not kept leave the step (no advantage, no loss term, no
    denominator). ``mode="zero"``: they stay in the loss denominators with advantage 0.
    Optional class marker ``removes_all_equal_groups`` (absent = False).
    """

    mode: Literal["drop", "zero"]

    def __call__(self, groups: Groups) -> Bool[Tensor, "n g"]: ...


@runtime_checkable
class RewardShaper(Protocol):
    """``groups -> groups`` with rewards changed group-wise (reads lengths and correctness)."""

    def __call__(self, groups: Groups) -> Groups: ...


@runtime_checkable
class PolicyObjective(Protocol):
    """The assembled loss the trainer minimises: policy term, KL term and aggregation together."""

    @property
    def needs_ref_logp(self) -> bool: ...

    @property
    def needs_whole_groups(self) -> bool: ...

    def totals(self, batch: PolicyBatch, num_groups: int) -> LossTotals: ...

    def __call__(self, batch: PolicyBatch) -> LossOutput: ...
