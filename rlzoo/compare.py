"""Side-by-side comparisons: every recipe with every seed on the same model, data and budget.

``rlzoo compare`` is a thin shell over this module. Runs train in worker processes (``jobs``); a
finished run whose ``summary.json`` holds the same recipe and config is reused, so an interrupted
comparison continues where it stopped; every run records the commit it was trained on.
"""

import json
import multiprocessing
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from rlzoo.errors import ConfigError
from rlzoo.experiment import generation_totals, load_experiment, logged_history, run_experiment
from rlzoo.trainer import TrainConfig


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    t = torch.tensor(list(values), dtype=torch.float64)
    return float(t.mean()), float(t.std()) if t.numel() > 1 else 0.0


def compare(
    recipe_names: Sequence[str],
    seeds: int,
    *,
    overrides: Sequence[str] = (),
    output_dir: str | Path = "runs/compare",
    train: Mapping[str, Any] | None = None,
    jobs: int = 1,
) -> dict[str, Any]:
    """Run every recipe on the same model, data, seeds and budget; write a table (Markdown, JSON) and a plot.

    A run whose ``summary.json`` already holds the same recipe and config is reused, so an interrupted
    comparison picks up where it stopped; the table names the commit(s) its runs were trained on.
    ``jobs`` > 1 trains that many runs at once in worker processes (each with the config's
    ``cpu_threads``); wall times are then measured under that shared load.
    """
    from rlzoo.plots import plot_runs

    if jobs < 1:
        raise ConfigError(f"compare: jobs must be >= 1, got {jobs}")
    out = Path(output_dir)
    train = {**(train or {}), **({"progress": False} if jobs > 1 else {})}
    runs = {
        name: [
            {"recipe": name, "overrides": list(overrides),
             "train": {**train, "seed": seed, "output_dir": str(out / name / f"seed{seed}"), "save_every": 0}}
            for seed in range(seeds)
        ]
        for name in recipe_names
    }
    for specs in runs.values():  # every configuration is validated before anything runs
        for spec in specs:
            load_experiment(**spec)
    result: dict[str, Any] = {"commit": "", "seeds": seeds, "overrides": list(overrides), "rows": []}
    commits: set[str] = set()
    curves = {}
    out.mkdir(parents=True, exist_ok=True)
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) if jobs > 1 else None
    try:
        futures = {name: [pool.submit(_run_spec, spec) for spec in specs] for name, specs in runs.items()} if pool else {}
        for name, specs in runs.items():
            summaries = [f.result() for f in futures[name]] if pool else [_run_spec(spec) for spec in specs]
            curves[name] = [logged_history(Path(spec["train"]["output_dir"]) / "metrics.jsonl") for spec in specs]
            result["rows"].append(_compare_row(name, summaries, curves[name]))
            commits |= {s.get("commit", "unknown") for s in summaries}  # reused runs keep the commit they ran on
            result["commit"] = ", ".join(sorted(commits))
            # written after every recipe, so an interrupted comparison keeps what it finished
            (out / "compare.json").write_text(json.dumps(result, indent=2))
            (out / "compare.md").write_text(compare_table(result))
            plot_runs(curves, out / "compare.png", title=f"rlzoo compare ({seeds} seeds, commit {result['commit']})")
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return result


def _run_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """One comparison run (in this process or a worker): reuse a finished identical run, else train it."""
    exp = load_experiment(**spec)
    done = Path(exp.config.output_dir) / "summary.json"
    if done.exists():
        summary = json.loads(done.read_text())
        if _jsonable(exp.recipe.to_dict()) == summary["recipe"] and _same_config(exp.config, summary["config"]):
            print(f"rlzoo compare: {exp.recipe.name} seed {exp.config.seed}: reusing {done}", flush=True)
            return summary
    print(f"rlzoo compare: {exp.recipe.name} seed {exp.config.seed}", flush=True)
    return run_experiment(exp, progress=exp.config.progress, overwrite=True)  # an interrupted run starts over


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _same_config(config: TrainConfig, saved: dict[str, Any]) -> bool:
    """Same settings, progress bars aside; a knob added since the run was saved counts at its default."""
    try:
        then = TrainConfig.from_dict(saved).to_dict()
    except ConfigError:  # a knob that no longer exists
        return False
    now = config.to_dict()
    then["progress"] = now["progress"]
    return _jsonable(now) == _jsonable(then)


def _compare_row(name: str, summaries: list[dict[str, Any]], histories: list[list[dict[str, Any]]]) -> dict[str, Any]:
    def stat(when: str, key: str) -> tuple[float, float]:
        return _mean_std([s[when].get(key, float("nan")) for s in summaries])

    def total(fn: Any) -> tuple[float, float]:
        return _mean_std([fn(s) for s in summaries])

    row: dict[str, Any] = {"recipe": name}
    for mode in ("greedy", "sampled"):
        for metric in ("accuracy", "length"):
            row[f"{metric}_{mode}_before"] = stat("before", f"eval/{mode}/{metric}")
            row[f"{metric}_{mode}"] = stat("after", f"eval/{mode}/{metric}")
    per_round = [s["config"]["prompts_per_step"] * s["config"]["group_size"] for s in summaries]
    totals = [generation_totals(h, n) for h, n in zip(histories, per_round, strict=True)]
    row["tokens_per_correct"] = _mean_std([t["generated_tokens"] / max(1.0, t["correct_completions"]) for t in totals])
    row["all_equal_frac"] = total(lambda s: s["all_equal_frac"])
    row["wall_time_s"] = total(lambda s: s["wall_time_s"])
    return row


def compare_table(result: Mapping[str, Any]) -> str:
    """The comparison as a Markdown table (mean ± std over seeds; before → after on the eval split)."""

    def pm(v: Sequence[float], fmt: str) -> str:
        return f"{v[0]:{fmt}} ± {v[1]:{fmt}}"

    def change(r: Mapping[str, Any], key: str, fmt: str) -> str:
        return f"{r[key + '_before'][0]:{fmt}} → {pm(r[key], fmt)}"

    lines = [
        f"commit `{result['commit']}`, {result['seeds']} seed(s), overrides: {' '.join(result['overrides']) or 'none'}",
        "",
        "| recipe | eval accuracy (greedy) | eval accuracy (sampled) | eval tokens (greedy) | eval tokens (sampled) "
        "| train tokens per correct | all-equal groups | wall time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['recipe']} | {change(r, 'accuracy_greedy', '.1%')} | {change(r, 'accuracy_sampled', '.1%')} "
            f"| {change(r, 'length_greedy', '.1f')} | {change(r, 'length_sampled', '.1f')} "
            f"| {pm(r['tokens_per_correct'], '.1f')} | {pm(r['all_equal_frac'], '.0%')} | {pm(r['wall_time_s'], '.0f')} |"
        )
    return "\n".join(lines) + "\n"
