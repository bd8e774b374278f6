"""rlzoo on a CUDA device: every recipe in bf16 with real generation, the KL at step 1, the lean
generator, and data parallelism over two GPUs (skipped with fewer).

Skipped without a device (see conftest.py); ``.ci/gpu`` runs them on a GPU machine.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rlzoo
from rlzoo.recipes import RECIPES
from rlzoo.trainer import Trainer
from tests.cuda.common import REWARDS, bad_metrics, changed, config, rows, snapshot, tiny

pytestmark = pytest.mark.cuda

ROOT = Path(__file__).resolve().parents[2]


def on_cuda(model: torch.nn.Module) -> bool:
    return all(p.device.type == "cuda" for p in model.parameters())


@pytest.mark.parametrize("name", RECIPES.names())
def test_two_bf16_steps_of_every_recipe(name: str, tmp_path: Path) -> None:
    model, tok = tiny()
    before = snapshot(model)
    trainer = Trainer(model, tok, name, rows(), REWARDS, config(str(tmp_path / "run")))
    history = trainer.train()
    assert trainer.accelerator.mixed_precision == "bf16"
    assert [h["step"] for h in history] == [1, 2]
    assert not bad_metrics(history), bad_metrics(history)
    assert on_cuda(model), f"recipe {name}: parameters are not on the GPU"
    assert changed(before, model), f"recipe {name} did not change any parameter"
    assert all(1 <= h["length/mean"] <= 12 and h["time/generate"] > 0 and h["tokens_per_s"] > 0 for h in history)


def test_kl_is_exactly_zero_at_step_one_in_bf16(tmp_path: Path) -> None:
    """Before the first update the policy is the reference: their log-probs must agree bit for bit, so
    the reference has to run under the same autocast as the policy."""
    recipe = rlzoo.recipes.build("grpo", kl="k3", kl_coef=0.1)
    model, tok = tiny()
    history = Trainer(model, tok, recipe, rows(), REWARDS, config(str(tmp_path / "run"))).train()
    assert history[0]["loss/kl"] == 0.0, history[0]["loss/kl"]
    assert not bad_metrics(history), bad_metrics(history)


def test_lean_generator(tmp_path: Path) -> None:
    model, tok = tiny()
    before = snapshot(model)
    trainer = Trainer(model, tok, "grpo", rows(), REWARDS, config(str(tmp_path / "run"), generator="lean"))
    history = trainer.train()
    assert not bad_metrics(history), bad_metrics(history)
    assert on_cuda(model) and changed(before, model)
    assert all(1 <= h["length/mean"] <= 12 and h["time/generate"] > 0 for h in history)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_gpu_data_parallel(tmp_path: Path) -> None:
    """torchrun, two processes, one GPU each: the worker asserts num_processes == 2 and trains 2 steps."""
    worker = ROOT / "tests" / "cuda" / "ddp_worker.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(worker), str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=420)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["num_processes"] == 2 and result["steps"] == [1, 2] and result["device"] == "cuda"
