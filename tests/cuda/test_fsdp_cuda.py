"""FSDP2 through accelerate's own path on two GPUs (NCCL, bf16 where the GPU has it), with the example
config and no test switch: the scenarios of tests/trainer/fsdp_worker.py, sharded for real.

Skipped with fewer than two GPUs. Written on a machine without any: not yet run on GPUs.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.trainer.test_fsdp import EXAMPLE, launcher_environment

pytestmark = pytest.mark.cuda

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_fsdp2_on_two_gpus(tmp_path: Path) -> None:
    out = tmp_path / "2.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "trainer" / "fsdp_worker.py"), str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "EXPECT_PROCESSES": "2", **launcher_environment(EXAMPLE)}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=420)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    results = torch.load(out, weights_only=False)
    for name in ("grpo_two_minibatches", "idle_rank", "kl", "reward_kl", "lora_kl"):
        got = results[name]
        assert 0.4 < got["policy_share"] < 0.6, name  # each GPU holds about half the policy
        assert max(float(d.abs().max()) for d in got["delta"]) > 1e-4, name  # and it learned
    assert results["kl"]["metrics"]["loss/kl"] == 0.0 and 0.4 < results["kl"]["reference_share"] < 0.6
    # two steps straight against one + save + resume; CUDA kernels may not be bit-deterministic
    assert results["resume"]["max_diff"] < 1e-3, results["resume"]["max_diff"]
    assert "sharded/.metadata" in results["resume"]["files"]
