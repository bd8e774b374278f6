"""Advantage estimators (``groups -> advantages [n, g]``) and group filters (``groups -> keep [n, g]``)."""

from rlzoo.registry import Registry

ESTIMATORS: Registry = Registry("advantage estimator", entry_point_group="rlzoo.advantages")
FILTERS: Registry = Registry("group filter", entry_point_group="rlzoo.filters")

build = ESTIMATORS.build
build_filter = FILTERS.build

from rlzoo.advantages import grpo  # noqa: E402,F401  (registers on import)
