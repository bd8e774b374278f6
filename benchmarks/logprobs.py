"""Log-probs of sampled tokens: naive vs TRL's approach vs rlzoo's chunked kernels; Objective timings.

Each (case, method) runs in its own subprocess: peak extra memory is that process's peak RSS
(``ru_maxrss``) minus the value right after the inputs are created (on CUDA:
``torch.cuda.max_memory_allocated`` minus the allocation after creating them). Large blocks are
forced to ``mmap`` (``MALLOC_MMAP_THRESHOLD_``) so freed memory is returned and the peak is the
method's, not glibc's heap fragmentation. Time is forward + backward (median of the repeats after
one warm-up run, which is the one whose memory is measured).

Methods on logits ``[b, t, v]`` (t = 1024 tokens per sequence):
  naive  ``(logits.float() / T).log_softmax(-1).gather(-1, labels)``
  trl    TRL's ``selective_log_softmax``: per sequence, logsumexp then gather (float32); per
         sequence ``log_softmax`` then gather (bf16), written here from its description
  rlzoo  ``rlzoo.losses.token_logprobs``
Every method must return the gradient ``dL/dlogits``, a ``[b, t, v]`` tensor: ``grad_mb`` is its
size and ``extra_wo_grad`` the peak extra memory beyond it. From hidden states ``[b, t, h]`` and an
LM head ``[v, h]``: ``naive_hidden`` (``hidden @ W.T`` then naive) vs ``rlzoo_hidden``
(``rlzoo.losses.token_logprobs_from_hidden``), where no method has to hold ``[b, t, v]``.

    python benchmarks/logprobs.py            # default cases, each subprocess within ~6 GB
    python benchmarks/logprobs.py --quick    # small smoke run
    python benchmarks/logprobs.py --large    # adds 152k x 16k and friends (needs ~25+ GB)
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

import rlzoo.losses as losses
from rlzoo.errors import ConfigError
from rlzoo.records import git_commit
from rlzoo.types import PolicyBatch

SEQ = 1024  # tokens per sequence
TEMPERATURE = 0.9  # != 1 so every method pays for the division
LOGIT_METHODS = ("naive", "trl", "rlzoo")
HIDDEN_METHODS = ("naive_hidden", "rlzoo_hidden")

DEFAULT_CASES = [
    {"v": 32_000, "tokens": 4_096, "dtype": "float32", "methods": LOGIT_METHODS},
    {"v": 32_000, "tokens": 16_384, "dtype": "bfloat16", "methods": LOGIT_METHODS},
    {"v": 152_064, "tokens": 4_096, "dtype": "bfloat16", "methods": LOGIT_METHODS},
    {"v": 152_064, "tokens": 2_048, "dtype": "float32", "methods": LOGIT_METHODS},
    {"v": 152_064, "tokens": 4_096, "dtype": "float32", "hidden": 64, "methods": HIDDEN_METHODS},
]
LARGE_CASES = [
    {"v": 32_000, "tokens": 16_384, "dtype": "float32", "methods": LOGIT_METHODS},
    {"v": 152_064, "tokens": 4_096, "dtype": "float32", "methods": LOGIT_METHODS},
    {"v": 152_064, "tokens": 16_384, "dtype": "bfloat16", "methods": LOGIT_METHODS},
    {"v": 152_064, "tokens": 16_384, "dtype": "float32", "hidden": 64, "methods": HIDDEN_METHODS},
]
QUICK_CASES = [
    {"v": 32_000, "tokens": 1_024, "dtype": "float32", "methods": LOGIT_METHODS},
    {"v": 32_000, "tokens": 1_024, "dtype": "bfloat16", "methods": LOGIT_METHODS},
    {"v": 152_064, "tokens": 1_024, "dtype": "float32", "hidden": 16, "methods": HIDDEN_METHODS},
]
OBJECTIVE_TOKENS = (65_536, 262_144, 1_048_576)
QUICK_OBJECTIVE_TOKENS = (16_384,)


# -- the methods ----------------------------------------------------------------------------


def naive(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (logits.float() / TEMPERATURE).log_softmax(-1).gather(-1, labels[..., None]).squeeze(-1)


def trl(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """TRL's ``selective_log_softmax``, one sequence at a time to bound its temporaries."""
    logits = logits / TEMPERATURE
    if logits.dtype in (torch.float32, torch.float64):
        picked = logits.gather(-1, labels[..., None]).squeeze(-1)
        return picked - torch.stack([torch.logsumexp(row, -1) for row in logits])
    rows = [
        row.log_softmax(-1).gather(-1, lab[:, None]).squeeze(-1)
        for row, lab in zip(logits, labels, strict=True)
    ]
    return torch.stack(rows).float()


def rlzoo_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return losses.token_logprobs(logits, labels, temperature=TEMPERATURE).logp


def make_inputs(case: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    """Inputs created in place (no float32 temporary for bf16), so the baseline is what stays."""
    dtype = getattr(torch, case["dtype"])
    b = case["tokens"] // SEQ
    g = torch.Generator(device=device).manual_seed(0)
    labels = torch.randint(0, case["v"], (b, SEQ), generator=g, device=device)
    weights = torch.randn(b, SEQ, generator=g, device=device)
    if "hidden" in case:
        hidden = torch.empty(b, SEQ, case["hidden"], dtype=dtype, device=device).normal_(generator=g)
        head = torch.empty(case["v"], case["hidden"], dtype=dtype, device=device).normal_(generator=g)
        return {
            "hidden": hidden.requires_grad_(),
            "head": head.mul_(0.3).requires_grad_(),
            "labels": labels,
            "w": weights,
        }
    logits = torch.empty(b, SEQ, case["v"], dtype=dtype, device=device).normal_(generator=g).mul_(3)
    return {"logits": logits.requires_grad_(), "labels": labels, "w": weights}


def step(method: str, x: dict[str, torch.Tensor]) -> None:
    if method in HIDDEN_METHODS:
        if method == "naive_hidden":
            logp = naive(x["hidden"] @ x["head"].T, x["labels"])
        else:
            logp = losses.token_logprobs_from_hidden(
                x["hidden"], x["head"], x["labels"], temperature=TEMPERATURE
            ).logp
        (logp * x["w"]).sum().backward()
        x["hidden"].grad = x["head"].grad = None
        return
    fn = {"naive": naive, "trl": trl, "rlzoo": rlzoo_logits}[method]
    (fn(x["logits"], x["labels"]) * x["w"]).sum().backward()
    x["logits"].grad = None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(
    case: dict[str, Any], method: str, mode: str, repeats: int, device: torch.device
) -> dict[str, Any]:
    """``mode="memory"``: peak extra bytes of one step; ``mode="time"``: median seconds of ``repeats``."""
    x = make_inputs(case, device)
    _sync(device)
    if mode == "time":
        times = []
        for _ in range(repeats + 1):  # the first run warms up
            start = time.perf_counter()
            step(method, x)
            _sync(device)
            times.append(time.perf_counter() - start)
        return {"time_s": statistics.median(times[1:])}
    if device.type == "cuda":
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        base = _peak_bytes(device)
    step(method, x)
    _sync(device)
    extra = _peak_bytes(device) - base
    grad_bytes = 0 if method in HIDDEN_METHODS else x["logits"].numel() * x["logits"].element_size()
    return {
        "extra_mb": extra / 2**20,
        "grad_mb": grad_bytes / 2**20,
        "extra_wo_grad_mb": max(extra - grad_bytes, 0) / 2**20,
    }


# -- the Objective --------------------------------------------------------------------------


def objective_rows(tokens_list: tuple[int, ...], repeats: int, device: torch.device) -> list[dict[str, Any]]:
    """Forward + backward of one Objective per policy loss (first aggregation it builds with, k3 KL)."""
    out = []
    for name in losses.POLICY_LOSSES.names():
        for aggregation in reversed(losses.AGGREGATIONS.names()):  # token_mean first
            try:
                objective = losses.Objective(policy=name, aggregation=aggregation, kl="k3", kl_coef=0.04)
                break
            except ConfigError:
                continue
        for tokens in tokens_list:
            b = tokens // SEQ
            g = torch.Generator(device=device).manual_seed(1)
            old = -torch.rand(b, SEQ, generator=g, device=device) * 3
            logp = (old + 0.1 * torch.randn(b, SEQ, generator=g, device=device)).requires_grad_()
            lengths = torch.randint(SEQ // 4, SEQ + 1, (b,), generator=g, device=device)
            batch = PolicyBatch(
                logp=logp,
                old_logp=old,
                mask=torch.arange(SEQ, device=device)[None] < lengths[:, None],
                advantages=torch.randn(b, generator=g, device=device),
                ref_logp=old + 0.05,
                rewards=torch.rand(b, generator=g, device=device),
                group_ids=torch.arange(b, device=device) // 8,
            )
            times = []
            for _ in range(repeats + 1):
                start = time.perf_counter()
                objective(batch).loss.backward()
                _sync(device)
                times.append(time.perf_counter() - start)
                logp.grad = None
            label = f"{name} + {type(objective.aggregation).component_name} + k3"
            out.append({"objective": label, "tokens": tokens, "time_s": statistics.median(times[1:])})
            print(f"  {label:<44} {tokens:>9,d} tokens  {out[-1]['time_s'] * 1e3:9.1f} ms", flush=True)
    return out


# -- driver ---------------------------------------------------------------------------------


def run_case(
    case: dict[str, Any], method: str, repeats: int, device: str, threads: int | None
) -> dict[str, Any]:
    """Two fresh subprocesses: memory (large blocks forced to mmap, so the peak is the method's own) and time."""
    out: dict[str, Any] = {}
    for mode in ("memory", "time"):
        env = dict(os.environ)
        if mode == "memory":
            env["MALLOC_MMAP_THRESHOLD_"] = str(1 << 20)
        spec = {
            "case": case,
            "method": method,
            "mode": mode,
            "repeats": repeats,
            "device": device,
            "threads": threads,
        }
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines()
            return {"error": lines[-1] if lines else f"exit {proc.returncode}"}
        out |= json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--large", action="store_true", help="add the large cases (152k x 16k: ~25+ GB)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up (median)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch threads in every worker (default: torch's)")
    parser.add_argument("--part", choices=("all", "logprobs", "objective"), default="all")
    parser.add_argument("--out", default="bench_results/logprobs.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        spec = json.loads(args.worker)
        if spec["threads"]:
            torch.set_num_threads(spec["threads"])
        print(
            json.dumps(
                worker(
                    spec["case"], spec["method"], spec["mode"], spec["repeats"], torch.device(spec["device"])
                )
            )
        )
        return

    cases = QUICK_CASES if args.quick else DEFAULT_CASES + (LARGE_CASES if args.large else [])
    repeats = 1 if args.quick else args.repeats
    print(
        f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, commit {git_commit()[:10]}"
    )
    header = f"{'vocab':>7} {'tokens':>7} {'dtype':>8} {'method':>13} {'time s':>8} {'x best':>7} {'extra MB':>9} {'x naive':>8} {'beyond grad MB':>15}"
    results = []
    if args.part != "objective":
        print(header)
    for case in cases if args.part != "objective" else []:
        rows = {m: run_case(case, m, repeats, args.device, args.threads) for m in case["methods"]}
        ok = {m: r for m, r in rows.items() if "error" not in r}
        best = min((r["time_s"] for r in ok.values()), default=float("nan"))
        naive_key = "naive_hidden" if "hidden" in case else "naive"
        naive_extra = ok.get(naive_key, {}).get("extra_mb", float("nan"))
        for method, r in rows.items():
            label = f"{case['v']:>7} {case['tokens']:>7} {case['dtype']:>8} {method:>13}"
            if "error" in r:
                print(f"{label}  failed: {r['error']}")
            else:
                r["time_vs_best"] = r["time_s"] / best
                r["extra_vs_naive"] = r["extra_mb"] / naive_extra if naive_extra else float("nan")
                print(
                    f"{label} {r['time_s']:8.3f} {r['time_vs_best']:7.2f} {r['extra_mb']:9.0f} "
                    f"{r['extra_vs_naive']:8.3f} {r['extra_wo_grad_mb']:15.0f}",
                    flush=True,
                )
            results.append({**{k: v for k, v in case.items() if k != "methods"}, "method": method, **r})

    objective = []
    if args.part != "logprobs":
        print("Objective forward + backward (policy loss + aggregation + k3 KL):")
        objective = objective_rows(
            QUICK_OBJECTIVE_TOKENS if args.quick else OBJECTIVE_TOKENS, repeats, torch.device(args.device)
        )

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "commit": git_commit(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seq_len": SEQ,
        "temperature": TEMPERATURE,
        "logprobs": results,
        "objective": objective,
    }
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
