"""Training scenarios run as one process or as several (``torchrun``); rank 0 saves what each produced.

    python ddp_worker.py OUT.pt                                   # one process
    ACCELERATE_USE_CPU=true python -m torch.distributed.run --standalone --nproc_per_node 2 ddp_worker.py OUT.pt

Every process asserts that it sees ``EXPECT_PROCESSES`` processes (``accelerate launch --cpu``
silently starts one). Each scenario trains one step from the same weights on a scripted rollout
(real generation for the evaluation) and records the parameter update and the step's metrics.
"""

import os
import sys

import torch

import rlzoo
from rlzoo.tasks import arithmetic_correct
from rlzoo.trainer import TrainConfig, Trainer
from tests.trainer.helpers import REWARDS, ScriptedGenerator, rows, tiny

DATA = rows(4)


def first_prompt_only(prompts, completions, answer, **kwargs):
    """Every group but the first prompt's is all wrong: Reinforce-Rej keeps one group, so under two
    processes one of them has nothing to train on (no micro-batch, no old log-probs)."""
    right = arithmetic_correct(prompts, completions, answer)
    return [r if p == DATA[0]["prompt"] else 0.0 for p, r in zip(prompts, right, strict=True)]


def even_first_term_only(prompts, completions, answer, **kwargs):
    """Prompts with an odd first term are all wrong: DAPO's dynamic sampling must refill them."""
    right = arithmetic_correct(prompts, completions, answer)
    return [r if int(p.split("+")[0]) % 2 == 0 else 0.0 for p, r in zip(prompts, right, strict=True)]


first_prompt_only.verifies_correctness = True
even_first_term_only.verifies_correctness = True

# name: (recipe, reward functions, dataset, config changes)
SCENARIOS = {
    "grpo_two_minibatches": ("grpo", REWARDS, DATA, {"mini_batches": 2}),
    "idle_rank": ("reinforce_rej", (first_prompt_only,), DATA, {"mini_batches": 2}),
    "kl": ("grpo", REWARDS, DATA, {}),
    "reward_kl": (rlzoo.recipes.build("custom", reward_kl="k1", reward_kl_coef=0.5), REWARDS, DATA, {}),
    "gvpo_whole_groups": ("gvpo", REWARDS, DATA, {}),
    "dapo_refill": ("dapo", (even_first_term_only,), rows(40), {}),
    "top_entropy_tokens": (rlzoo.recipes.build("grpo", selectors=({"name": "top_entropy", "rho": 0.5},)), REWARDS,
                           DATA, {}),
}


def run(name: str, out: str) -> dict:
    recipe, rewards, data, changes = SCENARIOS[name]
    model, tok = tiny()
    before = [p.detach().clone() for p in model.parameters()]
    cfg = TrainConfig(steps=1, prompts_per_step=4, group_size=4, max_completion_length=12, optimizer="sgd",
                      learning_rate=1.0, max_grad_norm=None, micro_batch_size=3, output_dir=out, progress=False,
                      save_every=0, eval_size=8, eval_batch_size=3, **changes)
    trainer = Trainer(model, tok, recipe, data, rewards, cfg, generator=ScriptedGenerator())
    processes = trainer.accelerator.num_processes
    assert processes == int(os.environ["EXPECT_PROCESSES"]), (processes, os.environ["EXPECT_PROCESSES"])
    (h,) = trainer.train()
    # the scripted generator ignores the model: evaluate with real generation
    trainer.generator = rlzoo.trainer.HFGenerator()
    evaluation = trainer.evaluate(rows(8, seed=1))
    delta = [a.detach() - b for a, b in zip(model.parameters(), before, strict=True)]
    return {"processes": processes, "metrics": h, "eval": evaluation, "delta": delta}


if __name__ == "__main__":
    torch.set_num_threads(1)
    runs = sys.argv[1] + ".runs"  # shared by the processes: they save one checkpoint together
    results = {name: run(name, os.path.join(runs, name)) for name in SCENARIOS}
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save(results, sys.argv[1])
