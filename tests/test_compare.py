"""Comparisons: the table, the reuse of finished runs, the arguments."""

import json

import pytest

from rlzoo.compare import _same_config, compare, compare_table
from rlzoo.errors import ConfigError
from rlzoo.experiment import load_experiment


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
