"""rlzoo: a composable zoo of group-based RL post-training algorithms (the GRPO family).

Submodules load lazily, so ``import rlzoo`` is cheap; ``rlzoo.advantages`` and friends import
torch the first time they are touched.
"""

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = (
    "advantages",
    "rewards",
    "losses",
    "selectors",
    "corrections",
    "recipes",
    "registry",
    "types",
    "errors",
    "trainer",
    "tasks",
    "data",
    "text",
    "experiment",
    "compare",
    "records",
)
_ATTRIBUTES = {
    "Groups": "rlzoo.types",
    "PolicyBatch": "rlzoo.types",
    "LossOutput": "rlzoo.types",
    "LossTotals": "rlzoo.types",
    "Registry": "rlzoo.registry",
    "Trainer": "rlzoo.trainer",
    "TrainConfig": "rlzoo.trainer",
    "ConfigError": "rlzoo.errors",
    "DataError": "rlzoo.errors",
    "RlzooError": "rlzoo.errors",
}

__all__ = [*_SUBMODULES, *_ATTRIBUTES, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"rlzoo.{name}")
    if name in _ATTRIBUTES:
        return getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    raise AttributeError(f"module 'rlzoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
