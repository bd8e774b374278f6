"""The vLLM suite: runs in the environment `.ci/vllm-env` builds (vllm-cpu 0.32.0).

Without vLLM these tests are skipped, except under ``RLZOO_REQUIRE_VLLM=1`` (what ``.ci/run``
sets for this suite), where a missing vLLM is an error: CI never skips it silently.
"""

import importlib.util
import os

import pytest

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in the test process
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache on CPU (the default takes far more)

if importlib.util.find_spec("vllm") is None:
    if os.environ.get("RLZOO_REQUIRE_VLLM") == "1":
        raise pytest.UsageError("RLZOO_REQUIRE_VLLM=1 but vLLM is not importable here; build .ci/vllm-env")
    collect_ignore_glob = ["test_*.py"]
