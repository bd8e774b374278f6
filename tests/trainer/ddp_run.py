"""One optimiser step on a fixed rollout; saves the parameter update. Run directly or under accelerate launch."""

import sys
import tempfile

import torch

from rlzoo.trainer import TrainConfig, Trainer
from tests.trainer.helpers import REWARDS, ScriptedGenerator, rows, tiny

model, tok = tiny()
before = [p.detach().clone() for p in model.parameters()]
with tempfile.TemporaryDirectory() as out:
    cfg = TrainConfig(steps=1, prompts_per_step=4, group_size=4, max_completion_length=12, optimizer="sgd",
                      learning_rate=1.0, max_grad_norm=None, micro_batch_size=3, output_dir=out,
                      progress=False, save_every=0)
    trainer = Trainer(model, tok, "grpo", rows(8), REWARDS, cfg, generator=ScriptedGenerator())
    trainer.train()
    if trainer.accelerator.is_main_process:
        torch.save([a.detach() - b for a, b in zip(model.parameters(), before, strict=True)], sys.argv[1])
