"""The assembled policy objective: policy term + KL term + entropy term, one aggregation."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from rlzoo.corrections import CORRECTIONS, Correction
from rlzoo.errors import ConfigError, DataError
from rlzoo.losses import AGGREGATIONS, KL_ESTIMATORS, POLICY_LOSSES
from rlzoo.losses._common import (
    Aggregation,
    KLEstimator,
    PolicyLoss,
    check_whole_groups,
    count_totals,
    group_sums,
    num_groups,
    require_group_ids,
    totals_dtype,
)
from rlzoo.losses.aggregation import weighted_sum
from rlzoo.params import check
from rlzoo.selectors import SELECTORS
from rlzoo.types import LossOutput, LossTotals, PolicyBatch, TokenSelector


@dataclass(frozen=True)
class Objective:
    """loss = agg(K·ℓ_policy) [floored] + kl_coef · agg(KL(logp, ref_logp)) - entropy_coef · agg(K'·H).

    Every field takes a registry spec (a name or ``{"name": ..., **params}``) or a built component.
    The trainer counts the normalisers of a whole optimiser step once and hands them in::

        totals = functools.reduce(operator.add, (objective.totals(mb, k) for mb in micro_batches))
        totals = totals.map(all_reduce_sum)                   # across processes
        for mb in micro_batches:
            objective(mb.replace(totals=totals)).loss.backward()

    and the summed gradient equals the full-batch gradient, for every aggregation.

    Composition rules (checked in ``__post_init__``, ConfigError says what to change):

    1. A token-level policy loss (ppo_clip, cispo, sapo, reinforce) takes any aggregation.
    2. A sequence-level one (``ratio="sequence"``, gspo) needs an aggregation that weighs every
       sequence the same (``seq_mean_token_mean``): a token or group mean would weight each
       sequence's single value by its length, the silent GSPO bug of PITFALLS.
    3. A group-level one (gvpo) needs an aggregation that weighs every group the same
       (``group_token_mean``): the mean of the per-group losses.
    4. ``kl`` and ``kl_coef`` go together (``kl_coef > 0`` needs a ``kl``; a ``kl`` needs
       ``kl_coef > 0``). The KL and entropy terms are per token and use the same aggregation.
    5. ``mask_zero_advantage`` (AGPO v2/v3) removes tokens whose advantage is exactly 0 from every
       term and from the totals; it needs a loss that uses advantages (not gvpo).
    6. ``loss_floor`` (AGPO: 0.0) clamps the aggregated policy loss from below, not the KL or
       entropy terms. The floor applies to the policy loss's weighted mean over a scope: a scope
       contributing ``L`` with aggregation weight ``s`` contributes ``max(L, floor · s)`` (with
       floor 0: ``max(L, 0)``, the authors' clamp). ``floor_scope="microbatch"`` is the authors'
       behaviour and depends on how the batch is split (a micro-batch of only positive
       advantages gets no gradient); ``"group"`` floors each group and needs whole groups.
       ``floor_scope="group"`` without a ``loss_floor`` is an error.
    7. ``selectors`` (``rlzoo.selectors``: top-ρ entropy, the off-policy sequence mask) combine with
       any policy loss: ``K`` is the AND of their keep masks and multiplies the per-token policy
       loss after the loss computed it (before the floor); ``K'`` is the AND of those that also gate
       the entropy bonus (``masks_entropy_bonus``). Denominators and totals are unchanged (a
       dropped token weighs 0), and the KL term is never masked. At most one selector may need a
       step-level entropy threshold.
    8. ``correction`` (``rlzoo.corrections``: TIS, MIS / IcePop) weighs the per-token policy loss
       by its importance weight against the inference engine (``rollout_logp``), after the loss and
       the selectors; it is a no-op when the batch has no ``rollout_logp``. With ``rollout_logp``
       the metrics add ``rollout/logp_diff_mean`` and ``rollout/logp_diff_max``, the gap
       ``|old_logp - rollout_logp|`` between trainer and engine over counted tokens.
    9. A KL estimator with ``needs_old_logp = True`` (an importance-weighted estimator such as
       DeepSeek-V3.2's ``ratio · k3``) is called as ``kl(logp, ref_logp, old_logp=old_logp)``; the
       others as ``kl(logp, ref_logp)``. Every input is 0 at padding.

    What the trainer must provide, from the ``needs_*`` properties: ``ref_logp``
    (``needs_ref_logp``); ``entropy`` of the current policy (``needs_entropy``); whole groups per
    micro-batch (``needs_whole_groups``); the engine's ``rollout_logp`` when the generator returned
    them (``needs_rollout_logp``; None otherwise, the parts then use ``old_logp``); and, with
    ``needs_entropy_threshold``, one threshold per optimiser step::

        values = cat([mb.entropy.detach()[objective.mask(mb)] for mb in micro_batches])  # all processes
        threshold = objective.entropy_threshold(values)         # the same on every process
        for mb in micro_batches:
            objective(mb.replace(totals=totals, entropy_threshold=threshold)).loss.backward()

    (the entropies of a no-grad forward of the current weights before the micro-batch loop). Without
    it each micro-batch uses its own quantile, exact only when the step is one micro-batch.

    Metrics: ``loss/policy``, ``loss/kl``, ``loss/entropy`` are this micro-batch's contributions
    (they add up over micro-batches); ``loss/floored`` is the fraction of floored scopes; the
    policy loss adds ``ratio/*``, ``clip/*``, ``kl/sampler``, ``entropy/mean`` as micro-batch means;
    each selector adds ``select/<name>/*`` (micro-batch means).
    """

    policy: str | Mapping[str, Any] | PolicyLoss = "ppo_clip"
    aggregation: str | Mapping[str, Any] | Aggregation = "token_mean"
    kl: str | Mapping[str, Any] | KLEstimator | None = None
    kl_coef: float = 0.0
    entropy_coef: float = 0.0
    mask_zero_advantage: bool = False
    loss_floor: float | None = None
    floor_scope: Literal["microbatch", "group"] = "microbatch"
    selectors: tuple[str | Mapping[str, Any] | TokenSelector, ...] = ()
    correction: str | Mapping[str, Any] | Any | None = None

    def __post_init__(self) -> None:
        if self.correction is not None:
            object.__setattr__(self, "correction", CORRECTIONS.build(self.correction))
        object.__setattr__(self, "policy", POLICY_LOSSES.build(self.policy))
        object.__setattr__(self, "aggregation", AGGREGATIONS.build(self.aggregation))
        if self.kl is not None:
            object.__setattr__(self, "kl", KL_ESTIMATORS.build(self.kl))
        if isinstance(self.selectors, str | Mapping) or not isinstance(self.selectors, tuple | list):
            raise ConfigError(
                f"Objective: selectors must be a tuple of selector specs, got {self.selectors!r}; "
                f"write selectors=({self.selectors!r},)"
            )
        object.__setattr__(self, "selectors", tuple(SELECTORS.build(s) for s in self.selectors))
        thresholds = [s for s in self.selectors if getattr(s, "needs_entropy_threshold", False)]
        if len(thresholds) > 1:
            raise ConfigError(
                f"Objective: {len(thresholds)} selectors need an entropy threshold "
                f"({', '.join(self._name(s) for s in thresholds)}); a step has one, so keep one of them"
            )
        inf = float("inf")
        check(self, "kl_coef", 0 <= self.kl_coef < inf, "must be a finite number >= 0")
        check(self, "entropy_coef", -inf < self.entropy_coef < inf, "must be a finite number")
        check(
            self,
            "kl_coef",
            self.kl is None or self.kl_coef > 0,
            f"with kl={self._name(self.kl)} adds nothing; set kl_coef > 0 or kl=None",
        )
        check(
            self,
            "kl_coef",
            self.kl is not None or self.kl_coef == 0,
            "needs a KL estimator: set kl='k3' (or 'k1', 'k2') or kl_coef=0",
        )
        check(
            self,
            "loss_floor",
            self.loss_floor is None or -inf < self.loss_floor < inf,
            "must be a finite number or None",
        )
        check(
            self,
            "floor_scope",
            self.floor_scope == "microbatch" or self.loss_floor is not None,
            "only matters with a loss_floor; set loss_floor (AGPO: 0.0)",
        )
        check(
            self,
            "mask_zero_advantage",
            not self.mask_zero_advantage or self.policy.uses_advantages,
            f"needs a loss that weighs tokens by their advantage; {self._name(self.policy)} does not use advantages",
        )
        level, unit = self.policy.level, self.aggregation.unit
        if level != "token" and unit != level:
            fits = [e.name for e in AGGREGATIONS if getattr(e.cls, "unit", None) == level]
            raise ConfigError(
                f"Objective: {self._name(self.policy)} is a {level}-level loss (one value per {level}), but "
                f"aggregation {self._name(self.aggregation)} weighs every {unit} the same, which weights each "
                f"{level}'s value by its number of tokens. Use aggregation={' or '.join(map(repr, fits))}"
            )

    @staticmethod
    def _name(component: object) -> str:
        return repr(getattr(type(component), "component_name", component))

    @property
    def needs_ref_logp(self) -> bool:
        """A KL term is on: batches need ``ref_logp``."""
        return self.kl is not None

    @property
    def needs_entropy(self) -> bool:
        """An entropy term or a selector reads it: batches need ``entropy`` (the current policy's)."""
        return self.entropy_coef != 0 or any(getattr(s, "needs_entropy", False) for s in self.selectors)

    @property
    def needs_entropy_threshold(self) -> bool:
        """A selector keeps tokens above a quantile of the step's entropies: the trainer should hand in
        ``entropy_threshold`` (:meth:`entropy_threshold`); without it each micro-batch uses its own."""
        return any(getattr(s, "needs_entropy_threshold", False) for s in self.selectors)

    @property
    def needs_rollout_logp(self) -> bool:
        """Some part reads ``rollout_logp`` (the inference engine's log-probs): pass them when the
        generator returned them; None makes those parts use ``old_logp``."""
        parts = (self.policy, self.kl, *self.selectors, self.correction)
        return any(getattr(p, "uses_rollout_logp", False) for p in parts)

    def entropy_threshold(self, entropy: Float[Tensor, " N"]) -> Float[Tensor, ""]:
        """The step-level threshold for ``PolicyBatch.entropy_threshold``.

        ``entropy``: the current policy's entropies at every counted token (``self.mask(batch)``) of
        the optimiser step, all micro-batches and processes concatenated. +inf when empty.
        """
        for selector in self.selectors:
            if getattr(selector, "needs_entropy_threshold", False):
                return selector.threshold(entropy)  # type: ignore[attr-defined]
        raise ConfigError("Objective: no selector needs an entropy threshold (see needs_entropy_threshold)")

    @property
    def needs_whole_groups(self) -> bool:
        """Every sequence of a group must be in the same micro-batch (gvpo, or a per-group floor).

        ``group_token_mean`` only needs ``group_ids``: its per-group normalisers come from the totals.
        """
        return self.policy.level == "group" or (self.loss_floor is not None and self.floor_scope == "group")

    def mask(self, batch: PolicyBatch) -> Bool[Tensor, "b t"]:
        """The tokens that count: ``batch.mask``, less zero-advantage tokens with ``mask_zero_advantage``."""
        if self.mask_zero_advantage:
            return batch.mask & (batch.token_advantages != 0)
        return batch.mask

    def totals(self, batch: PolicyBatch, num_groups: int) -> LossTotals:
        """Counts of this micro-batch under this objective's mask; ``group_ids`` lie in ``range(num_groups)``."""
        return count_totals(self.mask(batch), batch.group_ids, num_groups, totals_dtype(batch.logp))

    def __call__(self, batch: PolicyBatch) -> LossOutput:
        mask = self.mask(batch)
        totals = batch.totals
        if totals is None:
            totals = count_totals(mask, batch.group_ids, num_groups(batch), totals_dtype(batch.logp))
        batch = batch.replace(mask=mask, totals=totals)
        term = self.policy(batch)
        weights = self.aggregation.weights(mask, totals, batch.group_ids)
        keep, entropy_keep, selected = self._select(batch)
        policy_values = term.loss if keep is None else torch.where(keep, term.loss, 0.0)
        correction_weight, corrected = self._corrected(batch)
        if correction_weight is not None:
            policy_values = policy_values * correction_weight
        selected = {**selected, **corrected}
        policy_loss, metrics = self._floored(batch, policy_values, weights)
        metrics = {"loss/policy": policy_loss.detach(), **metrics, **term.metrics, **selected}
        loss = policy_loss
        if self.kl is not None:
            loss = loss + self.kl_coef * self._kl_loss(batch, weights, metrics)
        if self.entropy_coef != 0:
            if batch.entropy is None:
                raise DataError(f"Objective: entropy_coef={self.entropy_coef} needs batch.entropy")
            values = batch.entropy if entropy_keep is None else torch.where(entropy_keep, batch.entropy, 0.0)
            entropy = weighted_sum(values, weights, mask)
            loss = loss - self.entropy_coef * entropy
            metrics["loss/entropy"] = entropy.detach()
        return LossOutput(loss, metrics)

    def _select(
        self, batch: PolicyBatch
    ) -> tuple[Bool[Tensor, "b t"] | None, Bool[Tensor, "b t"] | None, dict[str, Tensor]]:
        """The AND of the selectors' keep masks (policy term; entropy bonus) and their metrics; None: keep all."""
        keep = entropy_keep = None
        metrics: dict[str, Tensor] = {}
        for selector in self.selectors:
            selection = selector(batch)
            keep = selection.keep if keep is None else keep & selection.keep
            if getattr(selector, "masks_entropy_bonus", False):
                entropy_keep = selection.keep if entropy_keep is None else entropy_keep & selection.keep
            metrics |= selection.metrics
        return keep, entropy_keep, metrics

    def _corrected(self, batch: PolicyBatch) -> tuple[Float[Tensor, "b t"] | None, dict[str, Tensor]]:
        """The correction's weight (None: no correction, or no ``rollout_logp``) and metrics, with the
        trainer-engine gap."""
        if batch.rollout_logp is None:
            return None, {}
        with torch.no_grad():
            gap = (batch.old_logp - batch.rollout_logp).abs()[batch.mask]
            metrics = {
                "rollout/logp_diff_mean": gap.mean() if gap.numel() else gap.new_tensor(float("nan")),
                "rollout/logp_diff_max": gap.max() if gap.numel() else gap.new_tensor(float("nan")),
            }
        corrected: Correction | None = None if self.correction is None else self.correction(batch)  # type: ignore[operator]
        if corrected is None:
            return None, metrics
        return corrected.weight, {**metrics, **corrected.metrics}

    def _kl_loss(self, batch: PolicyBatch, weights: Float[Tensor, "b t"], metrics: dict[str, Tensor]) -> Tensor:
        """The aggregated KL term; an estimator with ``needs_old_logp`` also gets the old log-probs."""
        mask = batch.mask
        if batch.ref_logp is None:
            raise DataError(f"Objective: kl={self._name(self.kl)} needs batch.ref_logp")
        logp, ref_logp = torch.where(mask, batch.logp, 0.0), torch.where(mask, batch.ref_logp.detach(), 0.0)
        if getattr(self.kl, "needs_old_logp", False):
            old_logp = torch.where(mask, batch.old_logp.detach(), 0.0)
            kl = self.kl(logp, ref_logp, old_logp=old_logp)  # type: ignore[misc]
        else:
            kl = self.kl(logp, ref_logp)  # type: ignore[misc]
        kl_loss = weighted_sum(kl, weights, mask)
        metrics["loss/kl"] = kl_loss.detach()
        return kl_loss

    def _floored(
        self, batch: PolicyBatch, loss: Float[Tensor, "b t"], weights: Float[Tensor, "b t"]
    ) -> tuple[Float[Tensor, ""], dict[str, Tensor]]:
        """The aggregated policy loss, each scope's contribution clamped below at ``loss_floor · weight``."""
        mask = batch.mask
        if self.loss_floor is None:
            return weighted_sum(loss, weights, mask), {}
        contrib = (loss * weights).where(mask, 0.0)
        if self.floor_scope == "microbatch":
            scope_loss, scope_weight = contrib.sum()[None], weights.sum()[None]
        else:
            group_ids = require_group_ids("Objective (floor_scope='group')", batch)
            check_whole_groups("Objective (floor_scope='group')", batch, mask)
            k = num_groups(batch)
            scope_loss = group_sums(contrib.sum(1), group_ids, k)
            scope_weight = group_sums(weights.sum(1), group_ids, k)
        floor = self.loss_floor * scope_weight
        kept = scope_loss >= floor
        present = scope_weight > 0
        floored = (~kept & present).sum() / present.sum().clamp_min(1)
        return torch.where(kept, scope_loss, floor).sum(), {"loss/floored": floored.to(floor.dtype)}
