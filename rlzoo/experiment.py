"""An experiment: a recipe, a model, a dataset and a TrainConfig, validated together, then run.

``rlzoo train`` is a thin shell over this module, and :mod:`rlzoo.compare` runs its experiments side
by side. With no model and no dataset named, an embedded task (:mod:`rlzoo.tasks`) is used: the
default one, or the one ``task`` names.
"""

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlzoo import recipes, yamlio
from rlzoo.data import looks_like_hub_id
from rlzoo.errors import ConfigError
from rlzoo.params import dataclass_params
from rlzoo.recipes import Recipe
from rlzoo.records import generation_totals, git_commit, logged_history
from rlzoo.rewards import resolve_rewards
from rlzoo.trainer import TrainConfig
from rlzoo.trainer.setup import lora_config

# Trainer knobs for the embedded task: a full run finishes in a few minutes on two CPU cores.
EMBEDDED_CONFIG: dict[str, Any] = {
    "steps": 120,
    "prompts_per_step": 16,
    "group_size": 8,
    "max_completion_length": 96,
    "learning_rate": 1e-4,
    "temperature": 1.0,
    "eval_every": 40,
    "eval_size": 200,
    "save_every": 40,
    "cpu_threads": 1,
}

TRAIN_KEYS = {p.name for p in dataclass_params(TrainConfig)}
_FILE_KEYS = {"recipe", "task", "model", "dataset", "eval_dataset", "reward_funcs", "train", "lora",
              "dataset_split", "dataset_subset", "eval_dataset_split", "prompt_column", "system_prompt", "chat"}
# how the dataset is read and shaped (rlzoo.data.load_prompts): option -> its type
_DATA_OPTIONS: dict[str, type] = {"dataset_split": str, "dataset_subset": str, "eval_dataset_split": str,
                                  "prompt_column": str, "system_prompt": str, "chat": bool}


@dataclass(frozen=True)
class Experiment:
    """Everything a training run needs, validated; ``model``/``dataset`` None = an embedded task
    (``task``, default the default task)."""

    recipe: Recipe
    config: TrainConfig
    task: str | None = None
    model: str | None = None
    dataset: str | None = None
    eval_dataset: str | None = None
    reward_funcs: tuple[Any, ...] = field(default_factory=tuple)
    dataset_split: str = "train"
    dataset_subset: str | None = None
    eval_dataset_split: str = "train"
    prompt_column: str = "prompt"
    system_prompt: str | None = None
    chat: bool = False
    lora: Mapping[str, Any] | None = None  # a config file's lora: section (rlzoo.trainer.setup.lora_config)
    reward_specs: tuple[Any, ...] = ()  # the specs reward_funcs were resolved from, as given

    @property
    def embedded(self) -> bool:
        return self.model is None and self.dataset is None

    @property
    def task_name(self) -> str | None:
        """The embedded task this runs on (None with a model and dataset of one's own)."""
        if not self.embedded:
            return None
        from rlzoo.tasks.default import DEFAULT

        return self.task or DEFAULT.name

    def describe(self) -> str:
        """What it trains on, in words (the ``rlzoo train`` banner)."""
        if not self.embedded:
            return f"{self.model} on {self.dataset}"
        from rlzoo.tasks.default import DEFAULT, get_task

        task = get_task(self.task_name or DEFAULT.name)
        if task is DEFAULT:
            return "the embedded arithmetic task and its tiny model"
        return f"the embedded task '{task.name}' ({task.description}) and its tiny model"

    def identity(self) -> dict[str, Any]:
        """What, besides the recipe and the TrainConfig, decides a run's result: the task or the model
        and data, the reward specs, the data options, LoRA. Finished runs are reused on it."""
        return json.loads(json.dumps({
            "task": self.task_name, "model": self.model, "dataset": self.dataset, "eval_dataset": self.eval_dataset,
            "reward_funcs": list(self.reward_specs), "dataset_split": self.dataset_split,
            "dataset_subset": self.dataset_subset, "eval_dataset_split": self.eval_dataset_split,
            "prompt_column": self.prompt_column, "system_prompt": self.system_prompt, "chat": self.chat,
            "lora": None if self.lora is None else dict(self.lora),
        }, default=str))

    def load_data(self) -> tuple[Any, Any]:
        """The training and evaluation (or None) ``datasets.Dataset``, read by :func:`rlzoo.data.load_prompts`.

        ``dataset_subset`` applies to the evaluation data too when that is the same source.
        """
        from rlzoo.data import load_prompts

        if self.dataset is None:
            raise ConfigError("Experiment.load_data: no dataset named (the embedded task brings its own data)")
        shape = {"prompt_column": self.prompt_column, "system_prompt": self.system_prompt, "chat": self.chat}
        train = load_prompts(self.dataset, split=self.dataset_split, subset=self.dataset_subset, **shape)
        if self.eval_dataset is None:
            return train, None
        subset = self.dataset_subset if self.eval_dataset == self.dataset else None
        return train, load_prompts(self.eval_dataset, split=self.eval_dataset_split, subset=subset, **shape)


def load_experiment(
    *,
    recipe: str | None = None,
    task: str | None = None,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    model: str | None = None,
    dataset: str | None = None,
    train: Mapping[str, Any] | None = None,
    rewards: Sequence[str] = (),
    eval_dataset: str | None = None,
    dataset_split: str | None = None,
    dataset_subset: str | None = None,
    eval_dataset_split: str | None = None,
    prompt_column: str | None = None,
    system_prompt: str | None = None,
    chat: bool | None = None,
    lora: Mapping[str, Any] | None = None,
) -> Experiment:
    """Combine a config file, command-line values and ``key=value`` overrides; report every problem at once.

    Overrides whose key is a TrainConfig field (``steps=50``) set the trainer; the others set the
    recipe (``loss.eps_high=0.28``, ``kl_coef=0.01``). Command-line values beat the file.
    ``rewards`` (``--reward``) replace the file's ``reward_funcs``; both are specs that
    :func:`rlzoo.rewards.resolve_rewards` resolves here, and their weights (``fn@0.5``) set ``reward_weights``.

    ``task`` names an embedded task (:data:`rlzoo.tasks.TASKS`; default the default task): it brings
    its own model, data and reward, so it excludes ``model``/``dataset``.

    ``dataset``/``eval_dataset`` are local files, save_to_disk folders or hub ids (checked here as far
    as that needs no reading; :meth:`Experiment.load_data` reads them). The other data options are
    :func:`rlzoo.data.load_prompts`'s: an ``eval_dataset_split`` without an ``eval_dataset`` is a
    split of ``dataset`` (``--eval-split test``); an ``eval_dataset`` of its own defaults to 'train'.
    """
    problems: list[str] = []
    data: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = yamlio.load(Path(config_file).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"config file {config_file}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {config_file}: must be a mapping with keys {sorted(_FILE_KEYS)}")
        problems += [f"config file: unknown key '{k}' (keys: {', '.join(sorted(_FILE_KEYS))})" for k in data if k not in _FILE_KEYS]
    model = model or data.get("model")
    dataset = dataset or data.get("dataset")
    task = task or data.get("task")
    if task is not None:
        from rlzoo.tasks.default import get_task

        try:
            get_task(str(task))
        except ConfigError as exc:
            problems.append(str(exc))
        if model is not None or dataset is not None:
            problems.append(f"task '{task}' is an embedded task with its own model and data; "
                            "drop --task to train your --model on your --dataset")
    if model is not None and not Path(model).exists() and not looks_like_hub_id(model):
        problems.append(f"model '{model}' is neither a local directory nor a hub id (owner/name)")
    given = {"dataset_split": dataset_split, "dataset_subset": dataset_subset, "eval_dataset_split": eval_dataset_split,
             "prompt_column": prompt_column, "system_prompt": system_prompt, "chat": chat}
    eval_dataset, data_options = _resolve_data(dataset, eval_dataset or data.get("eval_dataset"), data, given, problems)
    if (model is None) != (dataset is None):
        problems.append("name both --model and --dataset, or neither (the embedded task)")
    train_values = dict(EMBEDDED_CONFIG) if model is None and dataset is None else {}
    train_values |= data.get("train") or {}
    train_values |= dict(train or {})
    recipe_sets = []
    for assignment in overrides:
        key, sep, raw = assignment.partition("=")
        if sep and key in TRAIN_KEYS:
            train_values[key] = yamlio.load(raw)
        else:
            recipe_sets.append(assignment)
    reward_funcs: tuple[Any, ...] = ()
    reward_specs = list(rewards) or data.get("reward_funcs") or []
    try:
        reward_funcs, weights = resolve_rewards(reward_specs)
    except ConfigError as exc:
        problems += str(exc).splitlines()  # one problem per spec
    else:
        if weights is not None and "reward_weights" in train_values:
            problems.append(f"reward weights given twice: @weight in the reward specs and reward_weights={train_values['reward_weights']!r}")
        elif weights is not None:
            train_values["reward_weights"] = weights
    built_recipe = config = None
    try:
        built_recipe = recipes.build(recipe or data.get("recipe") or "agpo").override(recipe_sets)
    except ConfigError as exc:
        problems.append(str(exc))
    try:
        config = TrainConfig.from_dict(train_values)
    except ConfigError as exc:
        problems.append(str(exc))
    lora_spec = lora if lora is not None else data.get("lora")
    if lora_spec is not None:
        try:
            lora_config(lora_spec if isinstance(lora_spec, Mapping) else {})
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("the run cannot start:\n  - " + "\n  - ".join(problems))
    assert built_recipe is not None and config is not None
    return Experiment(
        recipe=built_recipe,
        config=config,
        task=None if task is None else str(task),
        model=model,
        dataset=dataset,
        eval_dataset=eval_dataset,
        reward_funcs=reward_funcs,
        lora=lora_spec,
        reward_specs=tuple(reward_specs) if isinstance(reward_specs, list) else (reward_specs,),
        **data_options,
    )


def _resolve_data(
    dataset: Any, eval_dataset: Any, data: Mapping[str, Any], given: Mapping[str, Any], problems: list[str]
) -> tuple[str | None, dict[str, Any]]:
    """The evaluation source and the data options (command line over file); problems go to ``problems``."""
    options: dict[str, Any] = {}
    for key, kind in _DATA_OPTIONS.items():
        value = given[key] if given.get(key) is not None else data.get(key)
        if value is None:
            continue
        if not isinstance(value, kind):
            problems.append(f"{key} must be a {kind.__name__}, got {value!r}")
            continue
        options[key] = value
    if dataset is None:
        named = sorted(options) + (["eval_dataset"] if eval_dataset is not None else [])
        if named:
            problems.append(f"{', '.join(named)}: for a dataset of your own; name --model and --dataset too "
                            "(the embedded task brings its own data)")
        return None, {}
    if eval_dataset is None and "eval_dataset_split" in options:
        eval_dataset = dataset  # a split of the training source, e.g. --eval-split test
    try:
        from rlzoo.data import source_problem
    except ImportError as exc:
        problems.append(f"reading a dataset needs the 'datasets' package ({exc}); pip install datasets")
        return eval_dataset, options
    subset = options.get("dataset_subset")
    splits = {"dataset": options.get("dataset_split", "train"), "eval_dataset": options.get("eval_dataset_split", "train")}
    for what, source in (("dataset", dataset), ("eval_dataset", eval_dataset)):
        if source is not None:
            same = what == "dataset" or source == dataset
            problem = source_problem(str(source), what, split=splits[what], subset=subset if same else None)
            if problem is not None:
                problems.append(problem)
    return None if eval_dataset is None else str(eval_dataset), options


def run_experiment(
    exp: Experiment, *, resume: bool = False, progress: bool = True, overwrite: bool = False, save_model: bool = True
) -> dict[str, Any]:
    """Train, evaluate before and after, write ``summary.json`` and ``curves.png``; return the summary.

    An embedded task evaluates on the first ``eval_size`` prompts of its held-out split (the same
    prompts for every recipe and seed). ``save_model=False`` writes no ``final/`` model and removes
    the checkpoints once the run has finished (a comparison keeps only the small files:
    ``summary.json``, ``before.json``, ``metrics.jsonl``, ``curves.png``).

    A model named by path or hub id is loaded by the Trainer (``TrainConfig.dtype``). An output
    directory that already holds a run is refused unless ``resume`` (continue it) or ``overwrite``
    (its metrics, checkpoints and final model are removed first). A resumed run's summary and plot
    cover the whole run: the "before" evaluation is kept in ``before.json``, the curves come from
    ``metrics.jsonl``.
    """
    from rlzoo.plots import plot_run
    from rlzoo.trainer import Trainer

    out = Path(exp.config.output_dir)
    _claim_output_dir(out, resume=resume, overwrite=overwrite)
    if exp.embedded:
        from rlzoo.tasks.default import get_task

        task = get_task(exp.task_name or "")
        model, tokenizer = task.load_model()
        train_rows, eval_rows = task.train_dataset(seed=exp.config.seed), task.eval_dataset(exp.config.eval_size)
        reward_funcs: Sequence[Any] = exp.reward_funcs or task.reward_funcs
    else:
        train_rows, eval_rows = exp.load_data()  # before the model: a data problem costs no model load
        model, tokenizer = exp.model, None
        reward_funcs = exp.reward_funcs or ("answer_match",)
    config = exp.config if progress else TrainConfig.from_dict({**exp.config.to_dict(), "progress": False})
    peft_config = None if exp.lora is None else lora_config(exp.lora)
    trainer = Trainer(model, tokenizer, exp.recipe, train_rows, reward_funcs, config=config, eval_dataset=eval_rows,
                      peft_config=peft_config)
    with trainer.scorer:  # its reward worker processes, if any, stop on an error too
        main = trainer.accelerator.is_main_process
        if resume and (out / "before.json").exists():
            before = json.loads((out / "before.json").read_text())
        else:
            before = {} if resume else trainer.evaluate() | trainer.evaluate(greedy=False)
            if main:
                out.mkdir(parents=True, exist_ok=True)
                (out / "before.json").write_text(json.dumps(before, indent=2))
        start = time.perf_counter()
        history = trainer.train(resume=resume)
        wall = time.perf_counter() - start
        after = trainer.evaluate() | trainer.evaluate(greedy=False)
        if resume:  # the steps before the resume, as logged
            history = logged_history(out / "metrics.jsonl")
        summary = {
            "recipe": exp.recipe.to_dict(),
            "config": config.to_dict(),
            "experiment": exp.identity(),
            "commit": git_commit(),
            "steps": trainer.step,
            "processes": trainer.processes.world,
            "wall_time_s": wall,
            "before": before,
            "after": after,
            **generation_totals(history, config.prompts_per_step * config.group_size),
            "all_equal_frac": sum(h.get("groups/all_equal_frac", 0.0) for h in history) / max(1, len(history)),
        }
        if save_model:  # every process: a sharded (FSDP2) model is gathered first; with LoRA, the adapter
            trainer.save_pretrained(out / "final")
        if main:
            if save_model and exp.lora is not None and exp.lora.get("merge"):
                trainer.model.merge_and_unload().save_pretrained(out / "final-merged")
                trainer.tokenizer.save_pretrained(out / "final-merged")
            (out / "summary.json").write_text(json.dumps(summary, indent=2))
            if not save_model:  # the run is finished: its checkpoints (weights, optimiser state) go too
                shutil.rmtree(out / "checkpoints", ignore_errors=True)
            where = f" on {exp.task_name}" if exp.embedded else ""
            plot_run(history, out / "curves.png", title=f"rlzoo {exp.recipe.name}{where}", before=before, after=after)
    return summary


_RUN_FILES = ("metrics.jsonl", "metrics.jsonl.gz", "checkpoints", "final", "final-merged", "summary.json", "before.json", "curves.png")


def _claim_output_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to train into a directory that holds another run, unless resuming or overwriting it."""
    used = [name for name in _RUN_FILES if (out / name).exists()]
    if not used or resume:
        return
    if not overwrite:
        raise ConfigError(
            f"output directory {out} already holds a run ({', '.join(used)}); continue it with --resume, "
            "replace it with --overwrite, or choose another --output-dir"
        )
    if int(os.environ.get("RANK", "0")) == 0:
        for name in used:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
