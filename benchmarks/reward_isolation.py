"""What protecting reward functions costs: the embedded task's steps with rewards in this process
and in a worker process with a timeout (the trainer's default), side by side in one run.

Each arm trains the shipped model with the ``agpo`` recipe for ``--steps`` steps (the first two are
warm-up), twice, interleaved; the table gives medians of seconds per step, of the trainer's scoring
phase and of the scorer's own time. Nothing is downloaded.

    python benchmarks/reward_isolation.py                  # 8 steps per arm and repeat
    python benchmarks/reward_isolation.py --quick          # 3 steps, one repeat
"""

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from rlzoo.experiment import EMBEDDED_CONFIG
from rlzoo.records import git_commit
from rlzoo.tasks import DEFAULT
from rlzoo.trainer import TrainConfig, Trainer

ARMS = {"in-process (reward_timeout=None)": None, "worker, reward_timeout=30 (default)": 30.0}


def run(timeout: float | None, steps: int) -> list[dict]:
    model, tok = DEFAULT.load_model()
    cfg = TrainConfig.from_dict({**EMBEDDED_CONFIG, "steps": steps, "eval_every": 0, "save_every": 0,
                                 "progress": False, "reward_timeout": timeout, "output_dir": tempfile.mkdtemp()})
    return Trainer(model, tok, "agpo", DEFAULT.train_dataset(seed=0), DEFAULT.reward_funcs, cfg).train()[2:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="bench_results/reward_isolation.json")
    args = parser.parse_args()
    steps, repeats = (3, 1) if args.quick else (args.steps, args.repeats)
    torch.set_num_threads(1)
    history: dict[str, list[dict]] = {name: [] for name in ARMS}
    for _ in range(repeats):
        for name, timeout in ARMS.items():
            history[name] += run(timeout, steps)
    rows = {
        name: {key: statistics.median(h[metric] for h in hs)
               for key, metric in (("s_per_step", "time/step"), ("score_s", "time/score"),
                                   ("scorer_s", "reward/seconds"))}
        for name, hs in history.items()
    }
    print("| rewards run | s/step | scoring phase s/step | scorer s/step |\n|---|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['s_per_step']:.3f} | {r['score_s']:.4f} | {r['scorer_s']:.4f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"commit": git_commit(), "steps": steps, "repeats": repeats, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
