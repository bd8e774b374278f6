"""Test-wide settings: offline hub, one torch thread, a hypothesis profile for CI.

One thread: on a 2-core machine two OpenMP threads wait on each other whenever another process
holds a core; the tiny models' generation measured 5-40x slower with 2 threads than with 1.

Shape checking (jaxtyping + beartype) for the whole package is switched on by the pytest option
``--jaxtyping-packages=rlzoo,beartype.beartype`` in pyproject.toml.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(1)

settings.register_profile(
    "rlzoo", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("rlzoo")
