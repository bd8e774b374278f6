"""FSDP2 scenarios, run as one unsharded process or as two sharded ones; rank 0 saves what each produced.

    python fsdp_worker.py OUT.pt [bf16]                                       # one process, unsharded
    RLZOO_TEST_FSDP2_ON_CPU=1 ACCELERATE_USE_CPU=true ACCELERATE_USE_FSDP=true FSDP_VERSION=2 \\
        FSDP_AUTO_WRAP_POLICY=TRANSFORMER_BASED_WRAP \\
        python -m torch.distributed.run --standalone --nproc_per_node 2 fsdp_worker.py OUT.pt [bf16]

accelerate does not shard CPU processes; ``RLZOO_TEST_FSDP2_ON_CPU`` makes the trainer force its
FSDP2 path (rlzoo.trainer.sharding), so FSDP2 runs for real on gloo. The process group times out
after 60 s, so a collective one process skips fails instead of hanging. Every process asserts that
it sees ``EXPECT_PROCESSES`` processes.
"""

import datetime
import os
import sys
from pathlib import Path

import peft
import torch

from rlzoo.errors import ConfigError
from rlzoo.trainer import HFGenerator, LeanGenerator, TrainConfig, Trainer, sharding
from rlzoo.trainer.engines.base import encode_prompts
from rlzoo.trainer.engines.vllm import VLLMGenerator
from rlzoo.trainer.sharding import CPU_TEST_OVERRIDE
from tests.trainer.ddp_worker import SCENARIOS
from tests.trainer.helpers import REWARDS, ScriptedGenerator, rows, tiny

UPDATES = ("grpo_two_minibatches", "idle_rank", "kl", "reward_kl", "lora_kl")
SHARDED = os.environ.get(CPU_TEST_OVERRIDE) == "1"


def full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [full(p.detach()).cpu().clone() for p in model.parameters()]


def local_fraction(model: torch.nn.Module | None) -> float | None:
    """This process's share of the parameters it holds (1.0: whole; about 1/N: sharded)."""
    if model is None:
        return None
    params = list(model.parameters())
    here = sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in params)
    return here / sum(p.numel() for p in params)


def check_processes(trainer: Trainer) -> int:
    processes = trainer.accelerator.num_processes
    assert processes == int(os.environ["EXPECT_PROCESSES"]), (processes, os.environ["EXPECT_PROCESSES"])
    return processes


def update(name: str, out: str) -> dict:
    """One step of a ddp_worker scenario from the same weights (gradients clipped to 0.3: the sharded clip
    binds too): the update, metrics and evaluation.
    ``lora_kl`` and ``kl_bf16`` are its ``kl`` with LoRA adapters (the reference: adapters off) and in bf16
    (autocast, and FSDP2's bf16 mixed-precision policy)."""
    lora = name == "lora_kl"
    recipe, rewards, data, changes = SCENARIOS["kl" if name in ("lora_kl", "kl_bf16") else name]
    if name == "kl_bf16":
        changes = {"mixed_precision": "bf16"}
    model, tok = tiny()
    before = weights(model)
    cfg = TrainConfig(steps=1, prompts_per_step=4, group_size=4, max_completion_length=12, optimizer="sgd",
                      learning_rate=1.0, max_grad_norm=0.3, micro_batch_size=3, output_dir=out, progress=False,
                      save_every=0, eval_size=8, eval_batch_size=3, **changes)
    adapters = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear",
                               task_type="CAUSAL_LM") if lora else None
    trainer = Trainer(model, tok, recipe, data, rewards, cfg, generator=ScriptedGenerator(), peft_config=adapters)
    result = {"processes": check_processes(trainer), "policy_share": local_fraction(trainer.model),
              "reference_share": local_fraction(trainer.ref_model), "from_hidden": trainer.logprobs.from_hidden}
    if lora:
        before = weights(trainer.model)  # the adapters' initial weights too
    (result["metrics"],) = trainer.train()
    result["delta"] = [a - b for a, b in zip(weights(trainer.model), before, strict=True)]
    prompts = encode_prompts(tok, [r["prompt"] for r in rows(3, seed=2)], trainer.processes.device, eos=trainer.eos)
    for engine in (HFGenerator(), LeanGenerator()):  # the scripted one ignores the model
        trainer.generator = engine
        result[f"eval/{type(engine).__name__}"] = trainer.evaluate(rows(7, seed=1))  # 4 + 3 prompts
        with sharding.gathered(trainer.model):  # the tokens themselves (a random model's figures say little)
            result[f"ids/{type(engine).__name__}"] = engine(trainer.model, tok, prompts, group_size=1, max_new_tokens=12,
                                                            temperature=0.0, top_p=1.0).completion_ids.cpu()
    return result


def resume(out: Path) -> dict:
    """Two steps (sampled with the trainer's own engine, AdamW) straight, and one step + save + resume."""
    def trainer(directory: str, steps: int) -> Trainer:
        model, tok = tiny()
        cfg = TrainConfig(steps=steps, prompts_per_step=4, group_size=4, max_completion_length=8, learning_rate=1e-2,
                          micro_batch_size=3, mini_batches=2, output_dir=str(out / directory), progress=False,
                          save_every=0)
        return Trainer(model, tok, "grpo", rows(8), REWARDS, cfg)

    straight = trainer("straight", 2)
    check_processes(straight)
    straight.train()
    first = trainer("resumed", 1)
    first.train()
    second = trainer("resumed", 2)
    second.train(resume=True)
    want, got = weights(straight.model), weights(second.model)
    second.save_pretrained(out / "final")
    step = out / "resumed" / "checkpoints" / "step-000001"
    return {"equal": all(torch.equal(a, b) for a, b in zip(want, got, strict=True)),
            "max_diff": max(float((a - b).abs().max()) for a, b in zip(want, got, strict=True)),
            "files": sorted(p.relative_to(step).as_posix() for p in step.rglob("*") if p.is_file()),
            "weights": got, "final": str(out / "final"), "run": str(out / "resumed")}


def vllm_refused(out: Path) -> str | None:
    """vLLM under FSDP2 (an engine that was never started: the trainer refuses before using it)."""
    model, tok = tiny()
    try:
        Trainer(model, tok, "grpo", rows(4), REWARDS, TrainConfig(steps=1, prompts_per_step=4, group_size=4,
                output_dir=str(out), progress=False), generator=object.__new__(VLLMGenerator))
    except ConfigError as exc:
        return str(exc)
    return None


def refused(out: Path) -> str | None:
    """Two processes asked for FSDP that accelerate does not grant on CPU: the trainer's error."""
    model, tok = tiny()
    saved = {k: os.environ.get(k) for k in ("ACCELERATE_USE_FSDP", CPU_TEST_OVERRIDE)}
    os.environ.update({"ACCELERATE_USE_FSDP": "true", CPU_TEST_OVERRIDE: "0"})
    try:
        Trainer(model, tok, "grpo", rows(4), REWARDS, TrainConfig(steps=1, prompts_per_step=4, group_size=4,
                output_dir=str(out), progress=False))
    except ConfigError as exc:
        return str(exc)
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return None


if __name__ == "__main__":
    torch.set_num_threads(1)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # accelerate joins this group: a short timeout
        gpus = torch.cuda.is_available()  # tests/cuda/test_fsdp_cuda.py: accelerate's own FSDP2 on two GPUs
        if gpus:
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        torch.distributed.init_process_group("nccl" if gpus else "gloo", timeout=datetime.timedelta(seconds=60))
    runs = Path(sys.argv[1] + ".runs")  # shared by the processes: they save checkpoints together
    if sys.argv[2:] == ["bf16"]:  # a process keeps its first mixed precision: bf16 runs on its own
        results = {"kl_bf16": update("kl_bf16", str(runs / "kl_bf16"))}
    else:
        results = {"refused": refused(runs / "refused"), "vllm_refused": vllm_refused(runs / "vllm")} if SHARDED else {}
        results |= {name: update(name, str(runs / name)) for name in UPDATES}
        results["resume"] = resume(runs / "resume")
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save(results, sys.argv[1])
