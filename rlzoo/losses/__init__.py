"""Policy losses, KL estimators, loss aggregations and the log-prob kernels."""

from rlzoo.registry import Registry

POLICY_LOSSES: Registry = Registry("policy loss", entry_point_group="rlzoo.losses")
KL_ESTIMATORS: Registry = Registry("KL estimator", entry_point_group="rlzoo.kl")
AGGREGATIONS: Registry = Registry("loss aggregation", entry_point_group="rlzoo.aggregations")

build = POLICY_LOSSES.build
build_kl = KL_ESTIMATORS.build
build_aggregation = AGGREGATIONS.build
