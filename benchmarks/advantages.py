"""Speed of every registered advantage estimator against the peers' formulations, side by side.

Usage::

    python benchmarks/advantages.py            # 1k, 64k and 1M rewards, g = 8 and 64
    python benchmarks/advantages.py --quick    # smoke run: 1k and 64k, few repeats

Each registered estimator (built with its defaults) is timed on one pre-built ``Groups``; the peers
are written here from their published descriptions (nothing is imported from them) and get the
same rewards in the layout they expect (a flat score vector and group ids):

- ``peer_loop``: verl's ``compute_grpo_outcome_advantage``: Python dicts of per-group lists, a
  mean and std per group, then a loop writing each score (run once at 1M rewards: it takes seconds).
- ``peer_repeat_interleave``: TRL's GRPO trainer: ``view(-1, g).mean/std(1)``, then
  ``repeat_interleave(g)`` and ``(r - mean) / (std + 1e-4)``.
- ``peer_scatter``: verl's ``compute_grpo_vectorized_outcome_advantage`` / ``group_mean_std``:
  count, sum and sum of squares per group id with ``index_add_``, gathered back by id.
- ``peer_view_std``: the naive ``(r - r.mean(1)) / (r.std(1) + eps)`` on ``[n, g]``.
- ``floor_clone``: ``rewards.clone()``, the cost of reading and writing the data once.

Timings are the median of ``--repeats`` runs after a warm-up (the minimum is recorded too). The CPU
may be shared: compare rows of one run (ratios), not runs.
"""

import argparse
import json
import os
import platform
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch

import rlzoo
from rlzoo.advantages import ESTIMATORS
from rlzoo.records import git_commit

PEERS = ("peer_loop", "peer_repeat_interleave", "peer_scatter", "peer_view_std")


# -- peers, written from their published descriptions -------------------------------------------


def peer_loop(scores: torch.Tensor, index: list[int], eps: float = 1e-6) -> torch.Tensor:
    """verl's per-group Python loop (compute_grpo_outcome_advantage)."""
    scores = scores.clone()
    id2score: dict[int, list[torch.Tensor]] = defaultdict(list)
    id2mean, id2std = {}, {}
    for i in range(scores.shape[0]):
        id2score[index[i]].append(scores[i])
    for idx, values in id2score.items():
        if len(values) == 1:
            id2mean[idx], id2std[idx] = torch.tensor(0.0), torch.tensor(1.0)
        else:
            stacked = torch.stack(values)
            id2mean[idx], id2std[idx] = torch.mean(stacked), torch.std(stacked)
    for i in range(scores.shape[0]):
        scores[i] = (scores[i] - id2mean[index[i]]) / (id2std[index[i]] + eps)
    return scores


def peer_repeat_interleave(scores: torch.Tensor, g: int, eps: float = 1e-4) -> torch.Tensor:
    """TRL's grouped mean/std, repeated back to one per completion."""
    mean = scores.view(-1, g).mean(dim=1).repeat_interleave(g, dim=0)
    std = scores.view(-1, g).std(dim=1).repeat_interleave(g, dim=0)
    return (scores - mean) / (std + eps)


def peer_scatter(scores: torch.Tensor, ids: torch.Tensor, n: int, eps: float = 1e-6) -> torch.Tensor:
    """verl's vectorised form: per-id count, sum and sum of squares by index_add_, gathered back."""
    count = torch.zeros(n).index_add_(0, ids, torch.ones_like(scores))
    total = torch.zeros(n).index_add_(0, ids, scores)
    total_sq = torch.zeros(n).index_add_(0, ids, scores * scores)
    mean = total / count.clamp_min(1)
    var = (total_sq - total * total / count.clamp_min(1)) / (count - 1).clamp_min(1)
    std = var.clamp_min(eps).sqrt()
    single = count <= 1
    mean, std = torch.where(single, 0.0, mean), torch.where(single, 1.0, std)
    return (scores - mean[ids]) / (std[ids] + eps)


def peer_view_std(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The direct [n, g] formulation with reductions over the short inner axis."""
    return (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + eps)


# -- harness -----------------------------------------------------------------------------------


def make_groups(n: int, g: int, seed: int) -> rlzoo.Groups:
    """An RLVR-like step: per-prompt success rates in [0, 1], rewards in {0, 1} (many all-equal groups)."""
    gen = torch.Generator().manual_seed(seed)
    rate = torch.rand(n, 1, generator=gen)
    correct = torch.rand(n, g, generator=gen) < rate
    lengths = torch.randint(1, 1024, (n, g), generator=gen)
    greedy = (torch.rand(n, generator=gen) < rate[:, 0]).float()
    return rlzoo.Groups(correct.float(), lengths, None, correct, greedy)


def timed(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict[str, float]]:
    """Wall-clock and CPU time of ``repeats`` calls of each function, taken round-robin.

    Interleaving the rows (rather than timing one row's repeats back to back) spreads the load of a
    shared machine evenly over them. CPU time (all threads of this process) does not count the time
    the process waits for a core, so its ratios are the steadier ones on a busy machine.
    """
    for fn in fns.values():
        fn()  # warm-up
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start)
    return {
        name: {
            "median_ms": statistics.median(wall[name]) * 1e3,
            "min_ms": min(wall[name]) * 1e3,
            "cpu_median_ms": statistics.median(cpu[name]) * 1e3,
            "repeats": repeats,
        }
        for name in fns
    }


def run_case(total: int, g: int, repeats: int, loop_limit: int) -> dict[str, dict[str, float]]:
    n = total // g
    groups = make_groups(n, g, seed=total + g)
    rewards = groups.rewards
    scores = rewards.reshape(-1)
    ids = torch.arange(n).repeat_interleave(g)
    index = ids.tolist()
    fns: dict[str, Callable[[], object]] = {
        "floor_clone": rewards.clone,
        "peer_repeat_interleave": lambda: peer_repeat_interleave(scores, g),
        "peer_scatter": lambda: peer_scatter(scores, ids, n),
        "peer_view_std": lambda: peer_view_std(rewards),
        "groups_construction": lambda: rlzoo.Groups(rewards, groups.lengths, None, groups.correct, groups.greedy_rewards),
    }
    for name in ESTIMATORS.names():
        estimator = ESTIMATORS.build(name)
        fns[name] = lambda estimator=estimator: estimator(groups)
    rows = timed(fns, repeats)
    if total <= loop_limit:  # seconds per call at 1M rewards: a few runs only, not interleaved
        loop_repeats = 1 if total >= 1 << 16 else max(1, repeats // 4)
        rows["peer_loop"] = timed({"peer_loop": lambda: peer_loop(scores, index)}, loop_repeats)["peer_loop"]
    # Sanity: the peers compute the same GRPO (eps 1e-6) on groups that are not all-equal.
    informative = (rewards.amax(1) > rewards.amin(1)).repeat_interleave(g)
    ours = ESTIMATORS.build("grpo")(groups).reshape(-1)
    gap = (ours - peer_scatter(scores, ids, n))[informative].abs().max().item() if bool(informative.any()) else 0.0
    rows["check_max_abs_diff_vs_scatter"] = {"value": gap}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1k and 64k rewards, 3 repeats")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per row (median reported)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads")
    parser.add_argument("--out", type=Path, default=Path("bench_results/advantages.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [1 << 10, 1 << 16] if args.quick else [1 << 10, 1 << 16, 1 << 20]
    repeats = 3 if args.quick else args.repeats
    loop_limit = 1 << 10 if args.quick else 1 << 20
    results = {}
    for total in sizes:
        for g in (8, 64):
            key = f"N={total},g={g}"
            print(f"running {key} ...", flush=True)
            results[key] = run_case(total, g, repeats, loop_limit)
    report = {
        "benchmark": "advantages",
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "repeats": repeats,
        "quick": args.quick,
        "results": results,
    }
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out} (commit {report['git_commit'][:12]}, {report['threads']} threads)")


def print_table(results: dict[str, dict[str, dict[str, float]]]) -> None:
    for key, rows in results.items():
        peers = [p for p in PEERS if p in rows]
        best_wall = min(rows[p]["median_ms"] for p in peers)
        best_cpu = min(rows[p]["cpu_median_ms"] for p in peers)
        clone = rows["floor_clone"]["median_ms"]
        print(f"\n{key}   (xpeer = best peer / this: wall, cpu; xclone = this / clone, wall)")
        print(f"{'':24}{'wall ms':>10}{'min ms':>10}{'cpu ms':>10}{'xpeer':>8}{'xpeer cpu':>10}{'xclone':>8}")
        for name, row in rows.items():
            if name.startswith("check"):
                continue
            ms, cpu = row["median_ms"], row["cpu_median_ms"]
            print(
                f"{name:24}{ms:10.3f}{row['min_ms']:10.3f}{cpu:10.3f}"
                f"{best_wall / ms:8.1f}{best_cpu / max(cpu, 1e-9):10.1f}{ms / clone:8.1f}"
            )
        print(f"{'check |grpo - scatter|':24}{rows['check_max_abs_diff_vs_scatter']['value']:10.2e}")


if __name__ == "__main__":
    main()
