"""Experiments: file + command line + overrides validated together; a user's own model and data."""

import json

import pytest
import yaml

from rlzoo.errors import ConfigError
from rlzoo.experiment import (
    EMBEDDED_CONFIG,
    _same_config,
    compare,
    compare_table,
    generation_totals,
    load_experiment,
    run_experiment,
)
from tests.trainer.helpers import rows, tiny


def test_overrides_split_between_trainer_and_recipe(tmp_path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"recipe": "dapo", "train": {"steps": 9, "group_size": 4}}))
    exp = load_experiment(config_file=cfg, overrides=["steps=3", "loss.eps_high=0.3"])
    assert exp.embedded and exp.recipe.name == "dapo"
    assert (exp.config.steps, exp.config.group_size) == (3, 4)  # command line beats the file
    assert exp.config.prompts_per_step == EMBEDDED_CONFIG["prompts_per_step"]
    assert exp.recipe.loss["eps_high"] == 0.3


def test_file_problems_reported_together(tmp_path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"recipee": "grpo", "train": {"stepz": 1}, "dataset": "/missing.jsonl"}))
    with pytest.raises(ConfigError) as err:
        load_experiment(config_file=cfg)
    msg = str(err.value)
    assert "unknown key 'recipee'" in msg and "unknown parameter 'stepz'" in msg
    assert "dataset '/missing.jsonl' does not exist" in msg


def test_users_own_model_and_dataset(tmp_path) -> None:
    model, tok = tiny()
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows(8)))
    exp = load_experiment(
        recipe="rloo",
        model=str(tmp_path / "model"),
        dataset=str(data),
        overrides=["steps=1", "prompts_per_step=4", "group_size=2", "max_completion_length=8", "progress=false",
                   f"output_dir={tmp_path / 'out'}"],
    )
    summary = run_experiment(exp, progress=False)
    assert summary["steps"] == 1 and summary["recipe"]["name"] == "rloo"
    assert (tmp_path / "out" / "summary.json").exists()


def test_compare_table_formats_mean_and_spread() -> None:
    row = {"recipe": "agpo", "accuracy_greedy_before": (0.5, 0.0), "accuracy_greedy": (0.75, 0.05),
           "accuracy_sampled_before": (0.4, 0.0), "accuracy_sampled": (0.6, 0.1),
           "length_greedy_before": (40.0, 0), "length_greedy": (30.0, 1.0),
           "length_sampled_before": (45.0, 0), "length_sampled": (35.0, 2.0),
           "tokens_per_correct": (50.0, 2.0), "all_equal_frac": (0.25, 0.0), "wall_time_s": (60.0, 1.0)}
    table = compare_table({"commit": "abc", "seeds": 3, "overrides": [], "rows": [row]})
    assert ("| agpo | 50.0% → 75.0% ± 5.0% | 40.0% → 60.0% ± 10.0% | 40.0 → 30.0 ± 1.0 | 45.0 → 35.0 ± 2.0 "
            "| 50.0 ± 2.0 | 25% ± 0% | 60 ± 1 |") in table


def test_compare_rejects_zero_jobs() -> None:
    with pytest.raises(ConfigError, match="jobs must be >= 1, got 0"):
        compare(["grpo"], 1, jobs=0)


def test_finished_runs_are_matched_on_every_setting_but_progress() -> None:
    config = load_experiment(recipe="grpo", overrides=["steps=5"]).config
    saved = json.loads(json.dumps(config.to_dict())) | {"progress": not config.progress}
    assert _same_config(config, saved)
    del saved["generator"]  # saved before that knob existed: its default is what ran
    assert _same_config(config, saved)
    assert not _same_config(config, saved | {"steps": 6})
    assert not _same_config(config, saved | {"retired_knob": 1})


def test_generation_totals_count_every_refill_round() -> None:
    # step 1: one round of 4 completions, mean length 10, half correct; step 2: three rounds
    # (12 completions) averaging 20 tokens and a quarter correct
    history = [{"length/mean": 10.0, "reward/accuracy": 0.5, "groups/rounds": 1.0},
               {"length/mean": 20.0, "reward/accuracy": 0.25, "groups/rounds": 3.0}]
    assert generation_totals(history, per_round=4) == {"generated_tokens": 40.0 + 240.0,
                                                        "correct_completions": 2.0 + 3.0}
