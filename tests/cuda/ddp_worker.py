"""One process of a two-process data-parallel run (tests/cuda/test_cuda.py launches it with torchrun).

    python -m torch.distributed.run --nproc_per_node 2 tests/cuda/ddp_worker.py OUT_DIR [--cpu]

Each process checks for itself: two processes, parameters on its own GPU, two finite bf16 steps,
parameters changed and equal on both processes afterwards. The main process writes
``OUT_DIR/result.json``. ``--cpu`` (gloo, fp32) is for trying the worker on a machine without GPUs.
"""

import json
import os
import sys
from pathlib import Path

import torch

from rlzoo.trainer import Trainer
from tests.cuda.common import REWARDS, bad_metrics, changed, config, rows, snapshot, tiny


def main() -> None:
    out, cpu = Path(sys.argv[1]), "--cpu" in sys.argv[2:]
    if cpu:
        os.environ["ACCELERATE_USE_CPU"] = "1"  # else accelerate sees no GPU and runs each process alone
    model, tok = tiny()
    before = snapshot(model)
    cfg = config(str(out / "run"), mixed_precision="no" if cpu else "bf16")
    trainer = Trainer(model, tok, "grpo", rows(), REWARDS, cfg)
    acc = trainer.accelerator
    assert acc.num_processes == 2, f"expected 2 processes, got {acc.num_processes}"
    history = trainer.train()
    rank = f"rank {acc.process_index}"
    assert [h["step"] for h in history] == [1, 2], (rank, history)
    assert not bad_metrics(history), (rank, bad_metrics(history))
    device = "cpu" if cpu else "cuda"
    assert all(p.device.type == device for p in model.parameters()), rank
    if not cpu:
        assert acc.mixed_precision == "bf16" and acc.device.index == acc.local_process_index, (rank, acc.device)
    assert changed(before, model), f"{rank}: no parameter changed"
    sums = torch.stack([p.detach().double().sum() for p in model.parameters()])
    both = acc.gather(sums).view(2, -1)
    assert torch.equal(both[0], both[1]), f"{rank}: the processes' parameters differ after training"
    if acc.is_main_process:
        result = {"num_processes": acc.num_processes, "steps": [h["step"] for h in history], "device": device}
        (out / "result.json").write_text(json.dumps(result))
    acc.wait_for_everyone()


if __name__ == "__main__":
    main()
