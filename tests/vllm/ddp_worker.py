"""Two processes, each with its own vLLM engine on its own prompts (TRL's colocate mode).

    EXPECT_PROCESSES=2 python -m torch.distributed.run --standalone --nproc_per_node 2 ddp_worker.py OUT_DIR

Each process asserts it sees ``EXPECT_PROCESSES`` processes, trains two steps with
``generator="vllm"``, and writes what it measured to ``OUT_DIR/rank<r>.pt``.
"""

import os
import sys

import torch

from rlzoo.tasks import build_tokenizer, make_split
from rlzoo.trainer import TrainConfig, Trainer
from tests.trainer.helpers import REWARDS
from tests.vllm.test_vllm import _model


def main(out: str) -> None:
    config = TrainConfig(steps=2, prompts_per_step=4, group_size=4, max_completion_length=12, learning_rate=5e-3,
                         generator="vllm", output_dir=os.path.join(out, "run"), progress=False, save_every=0,
                         logprobs_from_hidden=False)
    trainer = Trainer(_model(5), build_tokenizer(), "grpo", make_split("train", 16, 0), list(REWARDS), config)
    world = trainer.processes.world
    assert world == int(os.environ["EXPECT_PROCESSES"]), f"{world} processes, expected {os.environ['EXPECT_PROCESSES']}"
    history = trainer.train()
    weights = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    torch.save({"world": world, "history": history, "weights": weights},
               os.path.join(out, f"rank{trainer.processes.rank}.pt"))


if __name__ == "__main__":
    main(sys.argv[1])
