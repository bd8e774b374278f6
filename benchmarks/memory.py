"""Peak memory of the log-prob part of a training step at a 152k vocabulary: rlzoo's hidden-state
path, rlzoo's logits path and TRL's (model logits, then ``selective_log_softmax``), same inputs.

The model is Qwen2-shaped with Qwen2.5's 151,936-token vocabulary and a small hidden size (so it
runs here), random seeded weights, tied embeddings. One step: forward of every completion token,
log-probs, a policy-gradient loss ``-(A · logp)`` averaged over tokens, backward. Each variant runs
in its own process; "extra peak" is the process's peak RSS during the step minus its RSS just before
(so the weights, the data and the interpreter cancel out). TRL is run at its best on CPU: fp32, no
gradient checkpointing. The losses must agree to 1e-5.

    python benchmarks/memory.py                 # batch 8 x (32 prompt + 96 completion tokens)
    python benchmarks/memory.py --quick         # batch 2 x (16 + 32)
"""

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

VARIANTS = ("rlzoo_hidden", "rlzoo_logits", "trl")
VOCAB = 151_936


def step(variant: str, batch: int, prompt: int, completion: int) -> dict:
    import psutil
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rlzoo.trainer.batching import StepBatch
    from rlzoo.trainer.forward import LogProbs

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
                         max_position_embeddings=512)
    model = Qwen2ForCausalLM(config)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (batch, prompt + completion), generator=g)
    adv = torch.randn(batch, 1, generator=g)
    mask = torch.ones(batch, prompt + completion, dtype=torch.bool)
    labels = ids[:, -completion:]
    rss = psutil.Process().memory_info().rss
    if variant == "trl":
        from trl.trainer.utils import selective_log_softmax

        logits = model(input_ids=ids, attention_mask=mask.long(), logits_to_keep=completion + 1).logits[:, :-1]
        logp = selective_log_softmax(logits, labels)
    else:
        paths = LogProbs(model, contextlib.nullcontext, hidden_states=variant == "rlzoo_hidden")
        assert paths.from_hidden == (variant == "rlzoo_hidden")
        batch_ = StepBatch(ids, mask, torch.ones(batch, completion, dtype=torch.bool), torch.zeros(batch),
                           torch.zeros(batch), torch.arange(batch))
        logp, _ = paths.policy(batch_, temperature=1.0)
    loss = -(adv * logp).mean()
    loss.backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    grad = float(sum(p.grad.double().norm() ** 2 for p in model.parameters() if p.grad is not None) ** 0.5)
    return {"extra_peak_mb": (peak - rss) / 2**20, "loss": float(loss), "grad_norm": grad}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="bench_results/memory.json")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = (2, 16, 32) if args.quick else (8, 32, 96)
    if args.variant:  # a worker
        print(json.dumps(step(args.variant, *map(int, args.shape.split(",")))))
        return
    from rlzoo.records import git_commit

    rows = {}
    for variant in VARIANTS:
        done = subprocess.run([sys.executable, __file__, "--variant", variant, "--shape", ",".join(map(str, shape))],
                              capture_output=True, text=True, timeout=1200)
        if done.returncode:
            raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
        rows[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    b, p, t = shape
    logits_mb = b * (t + 1) * VOCAB * 4 / 2**20
    print(f"batch {b} x ({p} prompt + {t} completion) tokens, vocabulary {VOCAB}: one float32 copy of the "
          f"completion logits is {logits_mb:.0f} MB\n")
    print("| variant | extra peak (MB) | vs TRL | loss | gradient norm |\n|---|---:|---:|---:|---:|")
    for variant, r in rows.items():
        ratio = r["extra_peak_mb"] / rows["trl"]["extra_peak_mb"]
        print(f"| {variant} | {r['extra_peak_mb']:.0f} | {ratio:.2f} | {r['loss']:.7f} | {r['grad_norm']:.6f} |")
    gap = abs(rows["rlzoo_hidden"]["loss"] - rows["trl"]["loss"])
    print(f"\n|loss(rlzoo_hidden) - loss(trl)| = {gap:.2e}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"commit": git_commit(), "shape": shape, "vocab": VOCAB, "rows": rows,
                               "loss_gap": gap}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
