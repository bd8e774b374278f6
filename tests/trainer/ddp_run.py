"""One training step (two mini-batches) on a fixed rollout; saves the parameter update. Run directly or under accelerate launch.

    python ddp_run.py OUT.pt [one_group]

``one_group``: Reinforce-Rej keeps only the first prompt's group (every other group is all wrong),
so under two processes one of them has nothing to train on (no micro-batch, no old log-probs, an
empty mini-batch everywhere) and must still join every collective.
"""

import sys
import tempfile

import torch

from rlzoo.tasks import arithmetic_correct
from rlzoo.trainer import TrainConfig, Trainer
from tests.trainer.helpers import REWARDS, ScriptedGenerator, rows, tiny

data = rows(4)


def first_prompt_only(prompts, completions, answer, **kwargs):
    right = arithmetic_correct(prompts, completions, answer)
    return [r if p == data[0]["prompt"] else 0.0 for p, r in zip(prompts, right, strict=True)]


first_prompt_only.verifies_correctness = True

one_group = sys.argv[2:] == ["one_group"]
model, tok = tiny()
before = [p.detach().clone() for p in model.parameters()]
with tempfile.TemporaryDirectory() as out:
    cfg = TrainConfig(steps=1, prompts_per_step=4, group_size=4, max_completion_length=12, optimizer="sgd",
                      learning_rate=1.0, max_grad_norm=None, micro_batch_size=3, output_dir=out,
                      progress=False, save_every=0, mini_batches=2)
    recipe, rewards = ("reinforce_rej", (first_prompt_only,)) if one_group else ("grpo", REWARDS)
    trainer = Trainer(model, tok, recipe, data, rewards, cfg, generator=ScriptedGenerator())
    (h,) = trainer.train()
    if one_group:
        assert h["groups/trained"] == 1.0, h
    if trainer.accelerator.is_main_process:
        torch.save([a.detach() - b for a, b in zip(model.parameters(), before, strict=True)], sys.argv[1])
