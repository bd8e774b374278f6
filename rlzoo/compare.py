"""Side-by-side comparisons: every recipe with every seed on the same model, data and budget, paired by seed.

``rlzoo compare`` is a thin shell over this module. It takes what ``rlzoo train`` takes (an embedded
``task``, or a model, dataset, config file, reward functions and data options of one's own), runs
every recipe with seeds ``0 .. seeds-1`` in worker processes (``jobs``), and writes a table
(Markdown, JSON) and a figure. Runs of two recipes with the same seed share the model, the data
order and the evaluation prompts, so besides mean ± std per recipe the table gives, per recipe, the
per-seed difference to a baseline recipe with its mean and a paired bootstrap interval
(:mod:`rlzoo.stats`); the JSON holds every per-seed value.

Finished runs are reused: a run directory whose ``summary.json`` holds the same recipe, the same
TrainConfig (its ``output_dir`` and ``progress`` aside) and the same experiment (task or model and
data, rewards, data options) is read, not retrained, so an interrupted comparison continues where it
stopped and a grid can grow over several sessions. A comparison keeps only small files per run
(``summary.json``, ``before.json``, ``metrics.jsonl.gz``; no model unless ``keep_models``), so its
output directory, copied anywhere, is the cache. A model or reward file changed in place under the
same path is not noticed; every run records the commit it was trained on.
"""

import json
import math
import multiprocessing
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from rlzoo.errors import ConfigError
from rlzoo.experiment import TRAIN_KEYS, Experiment, load_experiment, run_experiment
from rlzoo.records import generation_totals, logged_history, pack_run
from rlzoo.stats import LEVEL, RESAMPLES, paired_difference
from rlzoo.trainer import TrainConfig

DEFAULT_BASELINE = "grpo"
# metrics compared pairwise: row key -> (label, unit); accuracies are fractions, shown in points
PAIRED_METRICS: dict[str, tuple[str, str]] = {
    "accuracy_greedy": ("greedy accuracy", "points"),
    "accuracy_sampled": ("sampled accuracy", "points"),
    "length_greedy": ("greedy tokens", "tokens"),
    "length_sampled": ("sampled tokens", "tokens"),
    "tokens_per_correct": ("train tokens per correct", "tokens"),
}
STATS = {"method": "paired percentile bootstrap over seeds", "level": LEVEL, "resamples": RESAMPLES, "seed": 0}
# the experiment options compare passes on to load_experiment
EXPERIMENT_KEYS = ("task", "config_file", "model", "dataset", "rewards", "eval_dataset", "dataset_split",
                   "dataset_subset", "eval_dataset_split", "prompt_column", "system_prompt", "chat", "lora")


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    t = torch.tensor(list(values), dtype=torch.float64)
    return float(t.mean()), float(t.std()) if t.numel() > 1 else 0.0


def default_output_dir(exp: Experiment) -> Path:
    """``runs/compare/<task>`` for an embedded task, ``runs/compare/custom`` for one's own model and data."""
    return Path("runs/compare") / (exp.task_name or "custom")


def compare(
    recipe_names: Sequence[str],
    seeds: int,
    *,
    overrides: Sequence[str] = (),
    output_dir: str | Path | None = None,
    train: Mapping[str, Any] | None = None,
    jobs: int = 1,
    baseline: str | None = None,
    experiment: Mapping[str, Any] | None = None,
    keep_models: bool = False,
    variants: Mapping[str, Sequence[str]] | None = None,
    report: str = "compare",
) -> dict[str, Any]:
    """Run every recipe on the same model, data, seeds and budget; write a table (Markdown, JSON) and a plot.

    ``variants`` names recipes of one's own for this comparison: ``{"v3_kl": ["agpo_v3", "kl=k3",
    "kl_coef=0.04"]}`` is ``agpo_v3`` with two recipe fields changed (an ablation), compared under
    its name like any recipe in ``recipe_names``. A variant changes the recipe only, never the budget.
    ``report`` names the table, data and figure (``<report>.md``, ``.json``, ``.png`` in the output
    directory), so several comparisons (a grid, its ablations) can share one cache of runs.

    ``experiment`` holds :func:`rlzoo.experiment.load_experiment`'s options other than the recipe and
    the overrides (:data:`EXPERIMENT_KEYS`: ``task``, ``config_file``, ``model``, ``dataset``,
    ``rewards``, the data options, ``lora``). ``baseline`` (default ``grpo`` when it is compared,
    else the first recipe) is what every other recipe is paired with. A finished identical run is
    reused (see the module docstring). ``jobs`` > 1 trains that many runs at once in worker
    processes (each with the config's ``cpu_threads``); wall times are then measured under that load.
    """
    from rlzoo.plots import plot_comparison

    if jobs < 1:
        raise ConfigError(f"compare: jobs must be >= 1, got {jobs}")
    if seeds < 1:
        raise ConfigError(f"compare: seeds must be >= 1, got {seeds}")
    if not report or not all(c.isalnum() or c in "-_." for c in report):
        raise ConfigError(f"compare: report must be a file name without a folder (letters, digits, - _ .), got {report!r}")
    if not recipe_names or len(set(recipe_names)) != len(recipe_names):
        raise ConfigError(f"compare: name each recipe once, got {list(recipe_names)}")
    unknown = sorted(set(experiment or {}) - set(EXPERIMENT_KEYS))
    if unknown:
        raise ConfigError(f"compare: unknown experiment option(s) {', '.join(unknown)}; known: {', '.join(EXPERIMENT_KEYS)}")
    variants = {name: list(spec) for name, spec in (variants or {}).items()}
    _check_variants(variants, recipe_names)
    if baseline is None:
        baseline = DEFAULT_BASELINE if DEFAULT_BASELINE in recipe_names else recipe_names[0]
    elif baseline not in recipe_names:
        raise ConfigError(f"compare: baseline '{baseline}' is not among the recipes ({', '.join(recipe_names)}); "
                          "add it to --recipes or choose another --baseline")
    experiment = dict(experiment or {})
    recipes = {name: variants.get(name, [name]) for name in recipe_names}  # name -> [recipe, field overrides...]
    first = load_experiment(recipe=recipes[recipe_names[0]][0], overrides=overrides, train=train, **experiment)
    out = Path(output_dir) if output_dir is not None else default_output_dir(first)
    train = {**(train or {}), **({"progress": False} if jobs > 1 else {})}
    runs = {
        name: [
            {"recipe": recipes[name][0], "overrides": [*overrides, *recipes[name][1:]], "label": name,
             "keep_models": keep_models, **experiment,
             "train": {**train, "seed": seed, "output_dir": str(out / name / f"seed{seed}"), "save_every": 0}}
            for seed in range(seeds)
        ]
        for name in recipe_names
    }
    for specs in runs.values():  # every configuration is validated before anything runs
        for spec in specs:
            load_experiment(**_experiment_args(spec))
    budget = {k: v for k, v in first.config.to_dict().items() if k not in ("seed", "output_dir", "progress")}
    result: dict[str, Any] = {
        "format": 2, "commit": "", "task": first.task_name, "experiment": first.identity(), "seeds": seeds,
        "overrides": list(overrides), "variants": variants, "baseline": baseline, "config": budget, "stats": dict(STATS),
        "output_dir": str(out), "rows": [], "paired": [],
    }
    commits: set[str] = set()
    curves = {}
    out.mkdir(parents=True, exist_ok=True)
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) if jobs > 1 else None
    try:
        futures = {name: [pool.submit(_run_spec, spec) for spec in specs] for name, specs in runs.items()} if pool else {}
        for name, specs in runs.items():
            summaries = [f.result() for f in futures[name]] if pool else [_run_spec(spec) for spec in specs]
            histories = [logged_history(Path(spec["train"]["output_dir"]) / "metrics.jsonl") for spec in specs]
            curves[name] = [_with_evaluations(h, s) for h, s in zip(histories, summaries, strict=True)]
            result["rows"].append(compare_row(name, list(range(seeds)), summaries, histories))
            result["paired"] = paired_rows(result["rows"], baseline)
            commits |= {s.get("commit", "unknown") for s in summaries}  # reused runs keep the commit they ran on
            result["commit"] = ", ".join(sorted(commits))
            # written after every recipe, so an interrupted comparison keeps what it finished
            (out / f"{report}.json").write_text(json.dumps(result, indent=2))
            (out / f"{report}.md").write_text(compare_report(result))
            plot_comparison(curves, result, out / f"{report}.png", title=figure_title(result))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return result


def _check_variants(variants: Mapping[str, Sequence[str]], recipe_names: Sequence[str]) -> None:
    """A variant is a new name, a registered recipe and recipe fields only (the budget is shared)."""
    from rlzoo.recipes import RECIPES

    for name, spec in variants.items():
        if name in RECIPES:
            raise ConfigError(f"compare: variant name '{name}' is a registered recipe; give the variant its own name")
        if name not in recipe_names:
            raise ConfigError(f"compare: variant '{name}' is not among the recipes ({', '.join(recipe_names)})")
        if not spec:
            raise ConfigError(f"compare: variant '{name}' names no recipe to start from, e.g. --variant {name} agpo_v3 kl=k3")
        for item in spec[1:]:
            key, sep, _ = item.partition("=")
            if not sep:
                raise ConfigError(f"compare: variant '{name}': expected KEY=VALUE, got '{item}'")
            if key in TRAIN_KEYS:
                raise ConfigError(f"compare: variant '{name}' sets the training setting '{key}'; a variant changes "
                                  "the recipe only (use --set for the budget every recipe shares)")


def _experiment_args(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in ("keep_models", "label")}


def _run_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """One comparison run (in this process or a worker): reuse a finished identical run, else train it."""
    exp = load_experiment(**_experiment_args(spec))
    done = Path(exp.config.output_dir) / "summary.json"
    if done.exists():
        summary = json.loads(done.read_text())
        if same_run(exp, summary):
            print(f"rlzoo compare: {spec['label']} seed {exp.config.seed}: reusing {done}", flush=True)
            return summary
    print(f"rlzoo compare: {spec['label']} seed {exp.config.seed}", flush=True)
    # an interrupted run starts over
    summary = run_experiment(exp, progress=exp.config.progress, overwrite=True, save_model=bool(spec.get("keep_models")))
    pack_run(Path(exp.config.output_dir))
    return summary


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def same_run(exp: Experiment, summary: Mapping[str, Any]) -> bool:
    """Whether a finished run's ``summary.json`` is ``exp``: same recipe, settings and experiment.

    A summary written before experiments were recorded ran on the default embedded task.
    """
    from rlzoo.tasks.default import DEFAULT

    then = summary.get("experiment")
    if then is None:  # before the experiment was recorded: the default task, its own reward
        then = Experiment(recipe=exp.recipe, config=exp.config, task=DEFAULT.name).identity()
    return (_jsonable(exp.recipe.to_dict()) == summary["recipe"] and _same_config(exp.config, summary["config"])
            and _jsonable(exp.identity()) == then)


def _same_config(config: TrainConfig, saved: dict[str, Any]) -> bool:
    """Same settings, progress bars and location aside; a knob added since the run was saved counts at its default."""
    try:
        then = TrainConfig.from_dict(saved).to_dict()
    except ConfigError:  # a knob that no longer exists
        return False
    now = config.to_dict()
    for key in ("progress", "output_dir"):  # a cache copied elsewhere is still the same run
        then[key] = now[key]
    return _jsonable(now) == _jsonable(then)


def _with_evaluations(history: list[dict[str, Any]], summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The history with the held-out evaluation before training (step 0) and after (the last step,
    unless the last step already logged one), for the evaluation curves."""
    last = summary.get("steps", history[-1]["step"] if history else 0)
    extra = [{"step": 0, **summary.get("before", {})}]
    if not any(h.get("step") == last and "eval/greedy/accuracy" in h for h in history):
        extra.append({"step": last, **{k: v for k, v in summary.get("after", {}).items() if k.startswith("eval/")}})
    return sorted([*history, *extra], key=lambda h: h["step"])


def compare_row(
    name: str, seeds: Sequence[int], summaries: Sequence[Mapping[str, Any]], histories: Sequence[Sequence[Mapping[str, Any]]]
) -> dict[str, Any]:
    """One recipe's line: mean and std over seeds of each metric, and every per-seed value (``per_seed``)."""
    per_seed: dict[str, list[Any]] = {"seed": list(seeds)}
    for mode in ("greedy", "sampled"):
        for metric in ("accuracy", "length"):
            for when, suffix in (("before", "_before"), ("after", "")):
                per_seed[f"{metric}_{mode}{suffix}"] = [s[when].get(f"eval/{mode}/{metric}", math.nan) for s in summaries]
    per_round = [s["config"]["prompts_per_step"] * s["config"]["group_size"] for s in summaries]
    totals = [generation_totals(h, n) for h, n in zip(histories, per_round, strict=True)]
    per_seed["tokens_per_correct"] = [t["generated_tokens"] / max(1.0, t["correct_completions"]) for t in totals]
    per_seed["all_equal_frac"] = [s["all_equal_frac"] for s in summaries]
    per_seed["wall_time_s"] = [s["wall_time_s"] for s in summaries]
    per_seed["commit"] = [s.get("commit", "unknown") for s in summaries]
    row: dict[str, Any] = {"recipe": name}
    for key, values in per_seed.items():
        if key not in ("seed", "commit"):
            row[key] = _mean_std(values)
    row["per_seed"] = per_seed
    return row


def paired_rows(rows: Sequence[Mapping[str, Any]], baseline: str) -> list[dict[str, Any]]:
    """Every recipe but the baseline paired with it per seed (:func:`rlzoo.stats.paired_difference`), from
    the rows' ``per_seed`` values alone; empty until the baseline's row is there."""
    by_name = {r["recipe"]: r["per_seed"] for r in rows}
    if baseline not in by_name:
        return []
    base = by_name[baseline]
    paired = []
    for name, values in by_name.items():
        if name == baseline:
            continue
        metrics = {
            key: paired_difference(dict(zip(values["seed"], values[key], strict=True)),
                                   dict(zip(base["seed"], base[key], strict=True)),
                                   level=STATS["level"], resamples=STATS["resamples"], seed=STATS["seed"]).to_dict()
            for key in PAIRED_METRICS
        }
        paired.append({"recipe": name, "baseline": baseline, "metrics": metrics})
    return paired


# -- tables ---------------------------------------------------------------------------------------


def describe_budget(result: Mapping[str, Any]) -> str:
    """``task chain4, 5 seeds, 120 steps of 16 prompts × 8 completions, lr 0.0001, eval on 2000 held-out prompts``."""
    config = result.get("config") or {}
    where = f"task `{result['task']}`" if result.get("task") else "your model and data"
    parts = [where, f"{result['seeds']} seed(s)"]
    if config:
        parts += [f"{config['steps']} steps of {config['prompts_per_step']} prompts × {config['group_size']} completions",
                  f"lr {config['learning_rate']:g}", f"eval on {config['eval_size']} held-out prompts"]
    return ", ".join(parts)


def figure_title(result: Mapping[str, Any]) -> str:
    """The budget and the commit, or how many commits the runs span (the JSON lists them all)."""
    commits = [c for c in result["commit"].split(", ") if c]
    where = f"commit {commits[0]}" if len(commits) == 1 else f"runs from {len(commits)} commits"
    return f"rlzoo compare: {describe_budget(result).replace('`', '')} ({where})"


def compare_table(result: Mapping[str, Any], *, header: bool = True) -> str:
    """The comparison as a Markdown table (mean ± std over seeds; before → after on the eval split)."""

    def pm(v: Sequence[float], fmt: str) -> str:
        return f"{v[0]:{fmt}} ± {v[1]:{fmt}}"

    def change(r: Mapping[str, Any], key: str, fmt: str) -> str:
        return f"{r[key + '_before'][0]:{fmt}} → {pm(r[key], fmt)}"

    lines = [
        f"commit `{result['commit']}`, {result['seeds']} seed(s), overrides: {' '.join(result['overrides']) or 'none'}",
        "",
    ] if header else []
    lines += [
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


def _signed(x: float, scale: float) -> str:
    return "nan" if math.isnan(x) else f"{x * scale:+.1f}"


def paired_cell(d: Mapping[str, Any], unit: str) -> str:
    """``+1.2 [-0.5, +2.9]`` (points for accuracies); ``+1.2 (n/a)`` without an interval (one seed)."""
    scale = 100.0 if unit == "points" else 1.0
    if d["interval"] is None:
        return f"{_signed(d['mean'], scale)} (n/a)"
    lo, hi = d["interval"]
    text = f"{_signed(d['mean'], scale)} [{_signed(lo, scale)}, {_signed(hi, scale)}]"
    return f"**{text}**" if d["excludes_zero"] else text


def paired_table(result: Mapping[str, Any]) -> str:
    """Per recipe, the mean per-seed difference to the baseline with its interval (bold when it excludes 0)."""
    paired = result.get("paired") or []
    if not paired:
        return ""
    baseline = result["baseline"]
    stats = result.get("stats", STATS)
    heads = " | ".join(f"{label} (pts)" if unit == "points" else label for label, unit in PAIRED_METRICS.values())
    lines = [
        f"| recipe − {baseline} | seeds | {heads} | interval excludes 0 |",
        "|---|---:|" + "---|" * len(PAIRED_METRICS) + "---|",
    ]
    for p in paired:
        metrics = p["metrics"]
        cells = [paired_cell(metrics[k], unit) for k, (_, unit) in PAIRED_METRICS.items()]
        n = len(next(iter(metrics.values()))["seeds"])
        if all(metrics[k]["interval"] is None for k in PAIRED_METRICS):
            resolved = "n/a (one seed)"
        else:
            arrows = [f"{label} {'↑' if metrics[k]['mean'] > 0 else '↓'}"
                      for k, (label, _) in PAIRED_METRICS.items() if metrics[k]["excludes_zero"]]
            resolved = ", ".join(arrows) or "none"
        lines.append(f"| {p['recipe']} | {n} | {' | '.join(cells)} | {resolved} |")
    note = (f"Mean of the per-seed differences (recipe − {baseline}, same seed: same model, data order and "
            f"evaluation prompts) and a {stats['level']:.0%} {stats['method']} ({stats['resamples']:,} resamples, "
            f"RNG seed {stats['seed']}); accuracies in points; bold: the interval excludes 0.")
    return "\n".join(lines) + "\n\n" + note + "\n"


def compare_report(result: Mapping[str, Any]) -> str:
    """``compare.md``: the budget, the variants, the table of means and the table of paired differences."""
    head = f"{describe_budget(result)}; commit `{result['commit']}`; overrides: {' '.join(result['overrides']) or 'none'}.\n\n"
    variants = result.get("variants") or {}
    if variants:
        head += "Variants: " + "; ".join(f"`{name}` = `{' '.join(spec)}`" for name, spec in variants.items()) + ".\n\n"
    paired = paired_table(result)
    return head + compare_table(result, header=False) + (f"\n{paired}" if paired else "")
