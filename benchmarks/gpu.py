"""Speed and memory on one GPU: rlzoo's Trainer and TRL's GRPOTrainer, both tuned, on a 0.5 B Qwen2.

What it measures, per variant (each in its own subprocess): seconds per step (median over the steps
after the warm-up), completion tokens per second over those steps, the generation part of a step
(each trainer's call that turns prompts into completions) and peak GPU memory
(``torch.cuda.max_memory_allocated``, reset once the model is on the device, so it counts weights,
optimiser state, activations and generation; reserved memory is in the JSON too).

Workload: GRPO without a KL term (rlzoo: the ``grpo`` recipe with ``kl=None, kl_coef=0``; TRL:
``loss_type="grpo", beta=0``), one optimiser step per batch (``num_iterations=1``), the same prompts,
group size, completion budget, micro-batch, learning rate (constant) and gradient clipping; sampling
at temperature 1 over the full vocabulary (top-k off, top-p 1).

"Tuned" means each trainer at its best on a GPU: bf16 autocast over fp32 weights (rlzoo
``mixed_precision="bf16"``, TRL ``bf16=True``), no gradient checkpointing (on by default in TRL),
Hugging Face ``generate`` on both sides (rlzoo's ``hf`` generator; TRL without vLLM or paged
generation: vLLM cannot reach the offline GPU machine), no reference model.

Model: a Qwen2 built from a ``transformers.Qwen2Config`` shaped as Qwen2.5-0.5B (hidden 896, 24
layers, 14 heads, 2 KV heads, intermediate 4864, vocab 151,936, tied embeddings; 494 M parameters)
with random weights, seeded, created on the device. Nothing is downloaded (``HF_HUB_OFFLINE=1``).
Tokenizer: rlzoo's character tokenizer for the arithmetic task (``rlzoo.tasks.build_tokenizer``: the
same pre-tokenizer, ``Fuse`` decoder, BOS template and special tokens) with its WordLevel vocabulary
padded to 151,936 entries by filler tokens ``<x24>``, ``<x25>``, ... Prompts encode exactly as in the
small task (``37+48+55=`` is 10 tokens); the model samples over the whole 152 k vocabulary, so the
softmax, sampling and log-prob work is a real Qwen's. A random model almost never samples EOS
(1 in 152 k), so completions run to the budget on both sides and the token counts match.

A step is: for rlzoo its ``time/step`` metric (its timer around one step); for TRL the wall time
between consecutive ends of optimiser steps (``on_step_end``, after ``torch.cuda.synchronize``);
the difference is per-step logging only.

    python benchmarks/gpu.py                       # 16 prompts x 8, 256 tokens, 8 steps after 2 warm-up
    python benchmarks/gpu.py --quick               # 8 prompts x 8, 128 tokens, 3 steps after 1 (~2-3 min)
    python benchmarks/gpu.py --device cpu --tiny   # smoke run on CPU: a 2-layer Qwen2, 2 steps, no GPU figures
    python benchmarks/gpu.py --variants rlzoo --out bench_results/gpu_rlzoo.json

The markdown table goes to stdout, progress to stderr, everything to ``--out`` (default
``bench_results/gpu.json``) with the git commit, library versions and GPU name. A variant that fails
(TRL not installed, out of memory) is reported in the table and the JSON; the exit status is then 1.
"""

import argparse
import json
import os
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

VARIANTS = ("rlzoo", "trl")
VOCAB = 151_936  # Qwen2.5's embedding rows
QWEN2_05B = {
    "hidden_size": 896,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "intermediate_size": 4864,
}
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 128}
# Workloads: prompts per step x completions per prompt, completion budget, micro-batch (sequences).
FULL = {"prompts": 16, "group": 8, "max_new": 256, "micro_batch": 32, "steps": 8, "warmup": 2}
QUICK = {"prompts": 8, "group": 8, "max_new": 128, "micro_batch": 32, "steps": 3, "warmup": 1}
SMOKE = {"prompts": 2, "group": 4, "max_new": 8, "micro_batch": 8, "steps": 1, "warmup": 1}
LEARNING_RATE = 1e-6
MAX_GRAD_NORM = 1.0
SEED = 0
GIB = 2**30


# -- one variant, in its own process ------------------------------------------------------------------


def build_tokenizer_152k() -> Any:
    """rlzoo's character tokenizer with its vocabulary padded to Qwen2.5's 151,936 entries."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from rlzoo.tasks import build_tokenizer

    base = build_tokenizer()
    spec = json.loads(base.backend_tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    vocab.update({f"<x{i}>": i for i in range(len(vocab), VOCAB)})
    specials = {k: getattr(base, k) for k in ("pad_token", "bos_token", "eos_token", "unk_token")}
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)), padding_side="left", model_max_length=32_768, **specials
    )
    assert len(tok) == VOCAB and tok("1+2=")["input_ids"] == base("1+2=")["input_ids"]
    return tok


def build_model(tokenizer: Any, tiny: bool, device: str) -> Any:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=VOCAB,
        **(TINY if tiny else QWEN2_05B),
        max_position_embeddings=32_768,
        rms_norm_eps=1e-6,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(SEED)
    with torch.device(device):
        model = Qwen2ForCausalLM(config)
    for k in ("pad_token_id", "bos_token_id", "eos_token_id"):
        setattr(model.generation_config, k, getattr(tokenizer, k))
    return model.train()


def run_rlzoo(work: dict[str, Any], model: Any, tokenizer: Any, rows: list[dict[str, str]], out_dir: str) -> dict[str, Any]:
    import rlzoo
    from rlzoo.tasks import arithmetic_correct
    from rlzoo.trainer import TrainConfig, Trainer

    config = TrainConfig(
        steps=work["warmup"] + work["steps"],
        prompts_per_step=work["prompts"],
        group_size=work["group"],
        max_completion_length=work["max_new"],
        temperature=1.0,
        top_p=1.0,
        learning_rate=LEARNING_RATE,
        max_grad_norm=MAX_GRAD_NORM,
        micro_batch_size=work["micro_batch"],
        mixed_precision="bf16" if work["device"] == "cuda" else "no",
        seed=SEED,
        generator="hf",
        output_dir=out_dir,
        save_every=0,
        progress=False,
    )
    recipe = rlzoo.recipes.build("grpo", kl=None, kl_coef=0.0)
    history = Trainer(model, tokenizer, recipe, rows, [arithmetic_correct], config).train()
    return {
        "step": [h["time/step"] for h in history],
        "generate": [h["time/generate"] for h in history],
        "tokens": [h["tokens_per_s"] * h["time/step"] for h in history],
        "length": [h["length/mean"] for h in history],
    }


def run_trl(work: dict[str, Any], model: Any, tokenizer: Any, rows: list[dict[str, str]], out_dir: str) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rlzoo.tasks import arithmetic_correct

    cuda = work["device"] == "cuda"

    def now() -> float:
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    stamps: list[float] = []

    class StepEnds(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            stamps.append(now())

    m = work["prompts"] * work["group"]
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
        use_vllm=False,
        bf16=cuda,
        gradient_checkpointing=False,
        use_cpu=not cuda,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        seed=SEED,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[arithmetic_correct],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[StepEnds()],
    )
    generate_s: list[float] = []
    tokens: list[float] = []
    generate = trainer._generate  # prompts -> token ids and texts: what rlzoo's generator does

    def timed_generate(prompts: list[Any]) -> Any:
        t0 = now()
        out = generate(prompts)
        generate_s.append(now() - t0)
        tokens.append(float(sum(len(ids) for ids in out[1])))
        return out

    trainer._generate = timed_generate
    stamps.append(now())
    trainer.train()
    return {
        "step": [b - a for a, b in pairwise(stamps)],
        "generate": generate_s,
        "tokens": tokens,
        "length": [t / m for t in tokens],
    }


def versions() -> dict[str, str | None]:
    import importlib.metadata as md

    out: dict[str, str | None] = {}
    for name in ("torch", "transformers", "accelerate", "trl", "datasets"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def worker(work: dict[str, Any]) -> dict[str, Any]:
    """Train ``warmup + steps`` steps of one variant; figures over the steps after the warm-up."""
    import torch

    from rlzoo.tasks import make_split

    cuda = work["device"] == "cuda"
    if not cuda:
        torch.set_num_threads(1)  # PITFALLS: small models on a busy CPU run fastest on one thread
    tokenizer = build_tokenizer_152k()
    model = build_model(tokenizer, work["tiny"], work["device"])
    params = sum(p.numel() for p in model.parameters())
    attn = model.config._attn_implementation
    rows = make_split("train", work["prompts"] * (work["warmup"] + work["steps"]), SEED)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as out_dir:
        raw = (run_trl if work["variant"] == "trl" else run_rlzoo)(work, model, tokenizer, rows, out_dir)
    w, n = work["warmup"], work["steps"]
    step, generate, tokens = raw["step"][w:], raw["generate"][w:], raw["tokens"][w:]
    if not (len(step) == len(generate) == len(tokens) == n):
        raise RuntimeError(f"{work['variant']}: expected {n} timed steps, got {len(step)} / {len(generate)} / {len(tokens)}")
    return {
        "variant": work["variant"],
        "params": params,
        "attn_implementation": attn,
        "step_s": statistics.median(step),
        "step_s_min": min(step),
        "step_s_max": max(step),
        "generate_s": statistics.median(generate),
        "update_s": statistics.median(s - g for s, g in zip(step, generate, strict=True)),
        "tokens_per_s": sum(tokens) / sum(step),
        "completions_per_s": work["prompts"] * work["group"] / statistics.median(step),
        "length_mean": statistics.fmean(raw["length"][w:]),
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / GIB if cuda else None,
        "peak_gpu_reserved_gib": torch.cuda.max_memory_reserved() / GIB if cuda else None,
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "versions": versions(),
        "steps_wall_s": step,
    }


# -- the driver ---------------------------------------------------------------------------------------


def run_worker(work: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One variant in a fresh process; a failure or a timeout becomes a row with its error."""
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        cmd = [sys.executable, __file__, "--worker", json.dumps(work), "--worker-out", result.name]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"variant": work["variant"], "error": f"timed out after {timeout:.0f} s"}
        if proc.returncode:
            return {"variant": work["variant"], "error": proc.stderr[-4000:] or f"exit status {proc.returncode}"}
        row = json.loads(Path(result.name).read_text())
        return row | {"process_s": time.perf_counter() - t0}


def table(results: list[dict[str, Any]]) -> str:
    def gib(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    lines = ["| variant | s/step (median) | tokens/s | peak GPU GiB | generate s/step |", "|---|---:|---:|---:|---:|"]
    for r in results:
        if "error" in r:
            reason = r["error"].strip().splitlines()[-1][:80] if r["error"].strip() else "failed"
            lines.append(f"| {r['variant']} | failed: {reason.replace('|', '/')} | | | |")
            continue
        lines.append(
            f"| {r['variant']} | {r['step_s']:.3f} | {r['tokens_per_s']:.0f} | {gib(r['peak_gpu_gib'])} "
            f"| {r['generate_s']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer Qwen2 (same vocabulary) and a tiny workload")
    parser.add_argument("--quick", action="store_true", help="a smaller workload and fewer steps")
    parser.add_argument("--steps", type=int, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, help="untimed steps first")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the rows")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds allowed per variant (its process)")
    parser.add_argument("--out", default="bench_results/gpu.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        Path(args.worker_out).write_text(json.dumps(worker(json.loads(args.worker))))
        return

    variants = args.variants.split(",")
    if unknown := sorted(set(variants) - set(VARIANTS)):
        parser.error(f"unknown variant: {', '.join(unknown)}")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("no CUDA device here; for a smoke run on CPU use --device cpu --tiny")
    workload = dict(SMOKE if args.tiny else QUICK if args.quick else FULL)
    workload |= {k: v for k, v in (("steps", args.steps), ("warmup", args.warmup)) if v is not None}
    if workload["warmup"] < 1:
        parser.error("--warmup must be >= 1 (TRL's first step interval includes its set-up)")
    results = []
    for variant in variants:
        work = workload | {"variant": variant, "device": args.device, "tiny": args.tiny}
        print(f"running {variant} on {args.device} ...", file=sys.stderr, flush=True)
        row = run_worker(work, args.timeout)
        if "error" in row:
            print(f"{variant} failed:\n{row['error']}", file=sys.stderr, flush=True)
        results.append(row)
    report = table(results)
    print(report)
    ok = [r for r in results if "error" not in r]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "gpu",
                "commit": git_commit(),
                "device": args.device,
                "gpu": ok[0]["gpu"] if ok else None,
                "versions": versions(),
                "model": "qwen2-tiny" if args.tiny else "qwen2-0.5b",
                "params": ok[0]["params"] if ok else None,
                "quick": args.quick,
                "tiny": args.tiny,
                "workload": workload,
                "learning_rate": LEARNING_RATE,
                "results": results,
                "table": report,
            },
            indent=2,
        )
    )
    print(f"wrote {out}", file=sys.stderr)
    sys.exit(1 if len(ok) < len(results) else 0)


if __name__ == "__main__":
    main()
