"""Policy losses, KL estimators, loss aggregations, the assembled objective and the log-prob kernels.

Three registries: ``POLICY_LOSSES`` (``batch -> PolicyTerm``), ``KL_ESTIMATORS``
(``(logp, ref_logp) -> per-token KL``, or ``(logp, ref_logp, old_logp=...)`` for an estimator
marked ``needs_old_logp``) and ``AGGREGATIONS`` (per-token values -> scalar with the step's global
normalisers). :class:`Objective` assembles one of each (plus an entropy term, the AGPO options
and any token selectors of :mod:`rlzoo.selectors`) into the ``PolicyObjective`` the trainer minimises::

    objective = rlzoo.losses.Objective(policy={"name": "ppo_clip", "eps_high": 0.28}, aggregation="token_mean")
"""

from rlzoo.registry import Registry

POLICY_LOSSES: Registry = Registry("policy loss", entry_point_group="rlzoo.losses")
KL_ESTIMATORS: Registry = Registry("KL estimator", entry_point_group="rlzoo.kl")
AGGREGATIONS: Registry = Registry("loss aggregation", entry_point_group="rlzoo.aggregations")

build = POLICY_LOSSES.build
build_kl = KL_ESTIMATORS.build
build_aggregation = AGGREGATIONS.build

# Registering modules (import order: the registries above must exist first).
from rlzoo.losses import aggregation, cispo, cov, dppo, gmpo, gvpo, kl, luspo, ppo, reinforce, sapo, vespo  # noqa: E402,F401
from rlzoo.losses._common import Aggregation, KLEstimator, PolicyLoss, PolicyTerm  # noqa: E402
from rlzoo.losses._logprobs import TokenLogProbs, token_logprobs, token_logprobs_from_hidden  # noqa: E402
from rlzoo.losses._objective import Objective  # noqa: E402

__all__ = [
    "AGGREGATIONS",
    "KL_ESTIMATORS",
    "POLICY_LOSSES",
    "Aggregation",
    "KLEstimator",
    "Objective",
    "PolicyLoss",
    "PolicyTerm",
    "TokenLogProbs",
    "build",
    "build_aggregation",
    "build_kl",
    "token_logprobs",
    "token_logprobs_from_hidden",
]
