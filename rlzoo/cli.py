"""The ``rlzoo`` command."""

import argparse
import importlib
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from rlzoo.errors import ConfigError, RlzooError
from rlzoo.registry import Registry

# kind on the command line -> (module, registry attribute)
KINDS: dict[str, tuple[str, str]] = {
    "estimators": ("rlzoo.advantages", "ESTIMATORS"),
    "filters": ("rlzoo.advantages", "FILTERS"),
    "rewards": ("rlzoo.rewards", "REWARD_FUNCS"),
    "shapers": ("rlzoo.rewards", "SHAPERS"),
    "losses": ("rlzoo.losses", "POLICY_LOSSES"),
    "kl": ("rlzoo.losses", "KL_ESTIMATORS"),
    "aggregations": ("rlzoo.losses", "AGGREGATIONS"),
    "selectors": ("rlzoo.selectors", "SELECTORS"),
    "corrections": ("rlzoo.corrections", "CORRECTIONS"),
    "recipes": ("rlzoo.recipes", "RECIPES"),
}


def registry(kind: str) -> Registry:
    module, attribute = KINDS[kind]
    return getattr(importlib.import_module(module), attribute)


def _list(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else list(KINDS)
    for kind in kinds:
        reg = registry(kind)
        names = reg.names(args.pattern)
        print(f"{kind} ({reg.kind}, {len(names)}):")
        for name in names:
            text = reg.describe(name) if args.verbose else f"{name} — {reg.get(name).summary}"
            print("  " + text.replace("\n", "\n  "))
        print()
    return 0


def _recipes(args: argparse.Namespace) -> int:
    from rlzoo import recipes

    if args.action == "list" or args.name is None:
        for name in recipes.RECIPES.names():
            print(f"{name:15s} {recipes.RECIPES.get(name).summary}")
        return 0
    print(recipes.build(args.name).override(args.set).show(), end="")
    return 0


def _experiment_kwargs(args: argparse.Namespace) -> dict:
    """The experiment options ``train`` and ``compare`` share, as load_experiment's keywords."""
    return {
        "task": args.task,
        "config_file": args.config,
        "model": args.model,
        "dataset": args.dataset,
        "rewards": args.reward,
        "eval_dataset": args.eval_dataset,
        "dataset_split": args.dataset_split,
        "dataset_subset": args.dataset_subset,
        "eval_dataset_split": args.eval_split,
        "prompt_column": args.prompt_column,
        "system_prompt": args.system_prompt,
        "chat": args.chat,
        "lora": {"r": args.lora, "alpha": 2 * args.lora} if args.lora else None,
    }


def _train(args: argparse.Namespace) -> int:
    from rlzoo.experiment import load_experiment, run_experiment

    train = {"output_dir": args.output_dir} if args.output_dir else {}
    exp = load_experiment(recipe=args.recipe, overrides=args.set, train=train, **_experiment_kwargs(args))
    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun, print once
    if main_process:
        print(f"rlzoo train: recipe '{exp.recipe.name}' on {exp.describe()}; {exp.config.steps} steps -> {exp.config.output_dir}")
    summary = run_experiment(exp, resume=args.resume, overwrite=args.overwrite)
    if main_process:
        print(_summary_text(summary, exp.config.output_dir))
    return 0


def _summary_text(summary: dict, output_dir: str) -> str:
    lines = [f"\ndone: {summary['steps']} steps in {summary['wall_time_s']:.0f} s on {summary['processes']} process(es)"]
    for mode in ("greedy", "sampled"):
        acc, length = f"eval/{mode}/accuracy", f"eval/{mode}/length"
        if acc in summary["after"]:
            before = summary["before"]
            was = f"{before[acc]:.1%} / {before[length]:.1f} tokens -> " if acc in before else ""
            lines.append(f"  eval {mode:7s} accuracy / length: {was}{summary['after'][acc]:.1%} / {summary['after'][length]:.1f} tokens")
    lines.append(f"  curves: {output_dir}/curves.png   metrics: {output_dir}/metrics.jsonl   model: {output_dir}/final")
    return "\n".join(lines)


def _compare(args: argparse.Namespace) -> int:
    from rlzoo.compare import compare, compare_report

    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    variants = {}
    for name, *spec in args.variant or ():
        variants[name] = spec
        if name not in names:
            names.append(name)
    train = {"progress": False} if args.quiet else {}
    result = compare(names, args.seeds, overrides=args.set, output_dir=args.output_dir, train=train, jobs=args.jobs,
                     baseline=args.baseline, experiment=_experiment_kwargs(args), keep_models=args.keep_models,
                     variants=variants, report=args.report)
    out, name = args.output_dir or result["output_dir"], args.report
    print(compare_report(result))
    print(f"table: {out}/{name}.md   plot: {out}/{name}.png   data: {out}/{name}.json")
    return 0


def benchmarks_dir() -> Path:
    """The repository's benchmarks/ folder (benchmarks ship with the source, not the wheel)."""
    return Path(__file__).resolve().parents[1] / "benchmarks"


def _bench(args: argparse.Namespace) -> int:
    folder = benchmarks_dir()
    scripts = sorted(folder.glob("*.py")) if folder.is_dir() else []
    if not scripts:
        raise ConfigError(f"no benchmark scripts in {folder}: 'rlzoo bench' runs from a source checkout of rlzoo")
    names = [s.stem for s in scripts]
    chosen = names if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise ConfigError(f"bench: unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(names)}")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in chosen:
        print(f"== rlzoo bench: {name} ==", flush=True)
        cmd = [sys.executable, str(folder / f"{name}.py"), "--out", str(out / f"{name}.json")]
        if subprocess.run(cmd + (["--quick"] if args.quick else [])).returncode:
            failed.append(name)
    print(f"results in {out}/" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _add_experiment_options(p: argparse.ArgumentParser) -> None:
    """What a run trains on: shared by ``train`` and ``compare``."""
    p.add_argument("--task", metavar="NAME",
                   help="an embedded task with its own tiny model and data (default arithmetic3; chain4: "
                   "four-number sums whose partial sums the answer needs); not with --model/--dataset")
    p.add_argument("--model", help="local path of a transformers causal LM")
    p.add_argument("--dataset", help="training prompts: a .jsonl/.json/.csv/.parquet file, a folder written by "
                   "save_to_disk, or a hub id such as openai/gsm8k (read from the datasets cache; nothing is "
                   "downloaded under HF_HUB_OFFLINE=1). Rows need a 'prompt' (see --prompt-column); the other "
                   "columns go to the reward functions")
    p.add_argument("--dataset-split", metavar="SPLIT",
                   help="split of --dataset (default train; a lone file has only train)")
    p.add_argument("--dataset-subset", metavar="NAME",
                   help="hub subset (datasets' config name, TRL's --dataset_config), e.g. main for openai/gsm8k; "
                   "also used for --eval-split of the same dataset")
    p.add_argument("--eval-dataset", metavar="SOURCE",
                   help="held-out prompts, any source --dataset takes (default: none, or --dataset with --eval-split)")
    p.add_argument("--eval-split", metavar="SPLIT",
                   help="split for evaluation: of --eval-dataset (default train), or of --dataset when no "
                   "--eval-dataset is named, e.g. --eval-split test")
    p.add_argument("--prompt-column", metavar="COLUMN",
                   help="the column holding the prompts, renamed to 'prompt' (default prompt; GSM8K: question)")
    p.add_argument("--system-prompt", metavar="TEXT",
                   help="system message put first in chat prompts (kept out if one is there); with plain-text "
                   "prompts it is prefixed, followed by a blank line")
    p.add_argument("--chat", action=argparse.BooleanOptionalAction, default=None,
                   help="send string prompts as chat messages [{'role': 'user', ...}] through the tokenizer's "
                   "chat template (default: as they are; message-list prompts are chat either way)")
    p.add_argument("--config", help="YAML with keys recipe, task, model, dataset, eval_dataset, reward_funcs, train, "
                   "dataset_split, dataset_subset, eval_dataset_split, prompt_column, system_prompt, chat")
    p.add_argument("--reward", action="append", default=[], metavar="SPEC",
                   help="a reward function (repeatable; replaces the config's reward_funcs): a registered name "
                   "(rlzoo list rewards), module:function or path/to/file.py:function, each optionally "
                   "@WEIGHT (default 1.0), e.g. --reward answer_match --reward my_rewards.py:fmt@0.5")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field (repeatable)")
    p.add_argument("--lora", type=int, metavar="R",
                   help="train LoRA adapters of rank R (alpha 2R) on every linear layer; the reference policy is "
                        "the base model. A config file's lora: section sets r, alpha, dropout, target_modules, merge")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlzoo",
        description="A composable zoo of group-based RL post-training algorithms.",
        epilog="Run 'rlzoo COMMAND --help' for the options of one command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser(
        "list",
        help="list registered components with their parameters",
        description="List registered components: estimators, filters, reward functions, shapers, "
        "policy losses, KL estimators, aggregations and recipes.",
    )
    p.add_argument("kind", nargs="?", choices=list(KINDS), help="only this kind (default: all)")
    p.add_argument("pattern", nargs="?", help="glob over names, e.g. 'grpo*'")
    p.add_argument("-v", "--verbose", action="store_true", help="show every parameter with type and default")
    p.set_defaults(func=_list)

    p = sub.add_parser(
        "recipes",
        help="list recipes or show one as YAML",
        description="Show a recipe's full combination of components, with overrides applied.",
        epilog="example: rlzoo recipes show dapo --set loss.eps_high=0.3",
    )
    p.add_argument("action", choices=["list", "show"], nargs="?", default="list")
    p.add_argument("name", nargs="?", help="recipe name (for show)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe field")
    p.set_defaults(func=_recipes)

    p = sub.add_parser(
        "train",
        help="train a model with a recipe (default: agpo on the embedded task)",
        description="Train with any recipe. With no --model and --dataset, runs on the embedded "
        "arithmetic task and its shipped tiny model (CPU, a few minutes), then prints accuracy and "
        "completion length before and after and writes curves.png.",
        epilog="examples:\n"
        "  rlzoo train\n"
        "  rlzoo train --task chain4          # the second embedded task (rlzoo.tasks.chain)\n"
        "  rlzoo train --recipe grpo --set steps=50 --set loss.eps_high=0.28\n"
        "  rlzoo train --model ./my-model --dataset prompts.jsonl --config run.yaml\n"
        "  rlzoo train --model ./my-model --dataset gsm8k/train.parquet --prompt-column question --chat\n"
        "  rlzoo train --model ./my-model --dataset openai/gsm8k --dataset-subset main --eval-split test "
        "--prompt-column question\n"
        "  rlzoo train --resume --output-dir runs/rlzoo     # continue after Ctrl-C\n"
        "  rlzoo train --reward answer_match --reward my_rewards.py:fmt@0.5\n"
        "--set KEY=VALUE sets a TrainConfig field (steps, learning_rate, group_size, ...) or a recipe\n"
        "field (loss.eps_high, kl_coef, shapers.0.alpha, ...); values are YAML (1e-5 is a number).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--recipe", help="recipe name (rlzoo recipes list); default agpo")
    _add_experiment_options(p)
    p.add_argument("--output-dir", help="where metrics, checkpoints and plots go (default runs/rlzoo)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the output dir")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run already in the output dir (its metrics, checkpoints and final model)")
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "compare",
        help="run several recipes side by side (same model, data, seeds, budget), paired by seed",
        description="Train every recipe with every seed on the same model, data and budget (an embedded\n"
        "--task, or --model/--dataset/--config/--reward as for 'rlzoo train'), then write a table of\n"
        "means (final eval accuracy and tokens, training tokens per correct answer, all-equal groups,\n"
        "wall time) and of each recipe's per-seed differences to a baseline with a paired bootstrap\n"
        "95% interval, as Markdown and JSON (every per-seed value), and a PNG: curves over steps with\n"
        "a band over seeds, and the differences with their intervals. Finished runs with the same\n"
        "settings are reused, so an interrupted comparison continues where it stopped and a grid can\n"
        "grow over several sessions; runs keep no model unless --keep-models, so the output directory\n"
        "is a small cache that can be copied and reused elsewhere.",
        epilog="examples:\n"
        "  rlzoo compare --recipes grpo,agpo,agpo_v3,rloo,reinforce_rej,dr_grpo,dapo --seeds 5 --jobs 2\n"
        "  rlzoo compare --task chain4 --recipes grpo,agpo --seeds 5 --set eval_size=2500\n"
        "  rlzoo compare --model ./my-model --dataset prompts.jsonl --config run.yaml --recipes grpo,dapo\n"
        "--set KEY=VALUE applies to every run (a TrainConfig or a recipe field, as for 'rlzoo train').",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--recipes", default="grpo,agpo", help="comma-separated recipe names (default grpo,agpo)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per recipe: 0 .. N-1 (default 1; the README grid uses 5)")
    p.add_argument("--baseline", help="the recipe every other one is paired with (default grpo if compared, "
                   "else the first of --recipes)")
    p.add_argument("--variant", nargs="+", action="append", metavar="WORD",
                   help="NAME RECIPE [KEY=VALUE ...]: compare a recipe of your own under NAME, RECIPE with recipe "
                   "fields changed, e.g. --variant v3_kl agpo_v3 kl=k3 kl_coef=0.04 (repeatable; added to "
                   "--recipes; an ablation changes the recipe only, the budget stays shared)")
    _add_experiment_options(p)
    p.add_argument("--output-dir", help="default runs/compare/<task> (runs/compare/custom for your own model)")
    p.add_argument("--report", default="compare", help="name of the table, data and plot in --output-dir "
                   "(default compare: compare.md, .json, .png); another name lets a second comparison, such as "
                   "ablations, share the runs already there")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs trained at once, in worker processes (default 1; progress bars are off when > 1)")
    p.add_argument("--keep-models", action="store_true", help="save each run's final model (default: only "
                   "summary.json, before.json and metrics.jsonl.gz, which is all a reuse needs)")
    p.add_argument("--quiet", action="store_true", help="no per-run progress bars")
    p.set_defaults(func=_compare)

    p = sub.add_parser(
        "bench",
        help="run the speed and memory benchmarks (advantages, log-probs and losses, vs TRL)",
        description="Run every script in benchmarks/ (or those named by --only); each prints a table "
        "and writes JSON into one folder.",
    )
    p.add_argument("--only", help="comma-separated benchmark names, e.g. advantages,logprobs")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run in about a minute")
    p.add_argument("--output-dir", default="bench_results", help="default bench_results")
    p.set_defaults(func=_bench)
    return parser


def show_logs() -> None:
    """rlzoo's log lines on stderr, INFO and up (which engine ``auto`` chose, a signal noted), once."""
    log = logging.getLogger("rlzoo")
    if not any(isinstance(h, _Stderr) for h in log.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged (as logging's last-resort handler)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    show_logs()
    try:
        return args.func(args)
    except RlzooError as exc:
        print(f"rlzoo {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
