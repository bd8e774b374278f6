"""One torch thread for the task tests.

On a shared 2-core machine two OpenMP threads wait on each other whenever another process holds a
core: generation with the tiny model measured ~40x slower (20 s instead of 0.5 s for 64 prompts).
"""

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
