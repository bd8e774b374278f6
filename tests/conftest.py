"""Test-wide settings: offline hub, deterministic threads, a hypothesis profile for CI.

Shape checking (jaxtyping + beartype) for the whole package is switched on by the pytest option
``--jaxtyping-packages=rlzoo,beartype.beartype`` in pyproject.toml.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from hypothesis import HealthCheck, settings

settings.register_profile(
    "rlzoo", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("rlzoo")
