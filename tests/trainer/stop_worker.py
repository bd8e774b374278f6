"""A long run under ``torchrun`` that a test stops by signalling ONE of its processes.

    python -m torch.distributed.run --standalone --nproc_per_node 2 stop_worker.py OUT

Each process writes ``OUT/pid-<rank>`` when it starts and ``OUT/done-<rank>`` (its final step)
when ``train`` returns.
"""

import os
import sys
from pathlib import Path

import torch

from rlzoo.trainer import TrainConfig, Trainer
from tests.trainer.helpers import REWARDS, ScriptedGenerator, rows, tiny

if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    model, tok = tiny()
    cfg = TrainConfig(steps=100_000, prompts_per_step=4, group_size=4, max_completion_length=8,
                      output_dir=str(out / "run"), progress=False, save_every=0)
    trainer = Trainer(model, tok, "grpo", rows(8), REWARDS, cfg, generator=ScriptedGenerator())
    rank = trainer.accelerator.process_index
    assert trainer.accelerator.num_processes == int(os.environ["EXPECT_PROCESSES"])
    (out / f"pid-{rank}").write_text(str(os.getpid()))
    trainer.train()
    (out / f"done-{rank}").write_text(str(trainer.step))
