"""Advantage estimators (``groups -> advantages [n, g]``) and group filters (``groups -> keep [n, g]``).

Markers that components declare (class attributes; absent means False):

- ``couples_groups``: an estimator whose output for one group depends on other groups (a
  batch-level statistic); the others are group-independent.
- ``acts_on_all_equal_groups``: an estimator with a special rule for groups whose rewards are all
  equal (AGPO); ``removes_all_equal_groups``: a filter that drops those groups. A recipe combining
  the two warns that the rule is inert.
- ``needs_verdict`` (filters, estimators, and reward shapers too): reads ``groups.correct``, so
  the run needs a source of correctness (a verifying reward function or ``TrainConfig.verifier``).
- ``needs_greedy_baseline``: an estimator that reads ``groups.greedy_rewards`` (ReMax); the
  trainer then scores one greedy completion per prompt.
"""

from rlzoo.registry import Registry

ESTIMATORS: Registry = Registry("advantage estimator", entry_point_group="rlzoo.advantages")
FILTERS: Registry = Registry("group filter", entry_point_group="rlzoo.filters")

build = ESTIMATORS.build
build_filter = FILTERS.build

# Each module registers its components on import.
from rlzoo.advantages import (  # noqa: E402
    agpo,
    filters,
    gpg,
    grpo,
    maxrl,
    opo,
    passk,
    reinforce,
    reinforce_pp,
    remax,
    rloo,
)

__all__ = [
    "ESTIMATORS",
    "FILTERS",
    "agpo",
    "build",
    "build_filter",
    "filters",
    "gpg",
    "grpo",
    "maxrl",
    "opo",
    "passk",
    "reinforce",
    "reinforce_pp",
    "remax",
    "rloo",
]
