"""Every test in tests/cuda is skipped, with its reason, on a machine without a CUDA device.

Run them on a GPU machine with ``pytest -q tests/cuda`` (``.ci/gpu`` does, offline). They build
tiny models from a config (nothing downloads) and train in bf16 on the device.
"""

import pytest
import torch

NO_CUDA = "no CUDA device (torch.cuda.is_available() is False): tests/cuda run on a GPU machine, see .ci/gpu"


def pytest_runtest_setup(item: pytest.Item) -> None:
    # A runtest hook in this conftest applies only to the tests under this folder.
    if not torch.cuda.is_available():
        pytest.skip(NO_CUDA)
