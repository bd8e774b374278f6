"""Comparisons: the tables, the paired statistics, the reuse of finished runs, a smoke comparison end to end."""

import json
import shutil

import pytest

from rlzoo.compare import (
    PAIRED_METRICS,
    _same_config,
    compare,
    compare_table,
    figure_title,
    paired_rows,
    paired_table,
    same_run,
)
from rlzoo.errors import ConfigError
from rlzoo.experiment import load_experiment
from rlzoo.stats import bootstrap_interval


def test_compare_table_formats_mean_and_spread() -> None:
    row = {"recipe": "agpo", "accuracy_greedy_before": (0.5, 0.0), "accuracy_greedy": (0.75, 0.05),
           "accuracy_sampled_before": (0.4, 0.0), "accuracy_sampled": (0.6, 0.1),
           "length_greedy_before": (40.0, 0), "length_greedy": (30.0, 1.0),
           "length_sampled_before": (45.0, 0), "length_sampled": (35.0, 2.0),
           "tokens_per_correct": (50.0, 2.0), "all_equal_frac": (0.25, 0.0), "wall_time_s": (60.0, 1.0)}
    table = compare_table({"commit": "abc", "seeds": 3, "overrides": [], "rows": [row]})
    assert ("| agpo | 50.0% → 75.0% ± 5.0% | 40.0% → 60.0% ± 10.0% | 40.0 → 30.0 ± 1.0 | 45.0 → 35.0 ± 2.0 "
            "| 50.0 ± 2.0 | 25% ± 0% | 60 ± 1 |") in table


def _per_seed(seeds: list[int], **values: list[float]) -> dict:
    base = dict.fromkeys(PAIRED_METRICS, [0.0] * len(seeds))
    return {"seed": seeds, **base, **values}


def test_the_figure_title_names_one_commit_or_counts_them() -> None:
    result = {"task": "chain4", "seeds": 5, "config": {}, "commit": "abc1234"}
    assert figure_title(result) == "rlzoo compare: task chain4, 5 seed(s) (commit abc1234)"
    assert figure_title(result | {"commit": "abc1234, def5678+dirty"}) == (
        "rlzoo compare: task chain4, 5 seed(s) (runs from 2 commits)")


def test_paired_rows_hand_worked() -> None:
    rows = [
        {"recipe": "grpo", "per_seed": _per_seed([0, 1], accuracy_greedy=[0.60, 0.70], length_greedy=[30.0, 32.0])},
        # seed 0: +0.05 and -5 tokens; seed 1: +0.15 and -3 tokens. Two seeds: the interval is [min, max]
        {"recipe": "agpo", "per_seed": _per_seed([0, 1], accuracy_greedy=[0.65, 0.85], length_greedy=[25.0, 29.0])},
        {"recipe": "rloo", "per_seed": _per_seed([1], accuracy_greedy=[0.70])},  # one seed in common
    ]
    assert paired_rows(rows[1:], "grpo") == []  # the baseline is not there yet
    agpo, rloo = paired_rows(rows, "grpo")
    acc, tokens = agpo["metrics"]["accuracy_greedy"], agpo["metrics"]["length_greedy"]
    assert acc["diffs"] == pytest.approx([0.05, 0.15], abs=1e-12) and acc["mean"] == pytest.approx(0.10, abs=1e-12)
    assert acc["interval"] == pytest.approx([0.05, 0.15], abs=1e-12) and acc["excludes_zero"] is True
    assert tokens == {"seeds": [0, 1], "diffs": [-5.0, -3.0], "mean": -4.0, "sd": pytest.approx(2 ** 0.5),
                      "interval": [-5.0, -3.0], "level": 0.95, "excludes_zero": True}
    assert agpo["metrics"]["accuracy_sampled"]["interval"] == [0.0, 0.0]  # equal values: exactly 0
    assert rloo["metrics"]["accuracy_greedy"]["seeds"] == [1] and rloo["metrics"]["accuracy_greedy"]["interval"] is None

    table = paired_table({"baseline": "grpo", "paired": [agpo, rloo]})
    assert "| recipe − grpo | seeds | greedy accuracy (pts) |" in table
    assert "| agpo | 2 | **+10.0 [+5.0, +15.0]** | +0.0 [+0.0, +0.0] | **-4.0 [-5.0, -3.0]** |" in table
    assert "| greedy accuracy ↑, greedy tokens ↓ |" in table
    assert "| rloo | 1 | +0.0 (n/a) |" in table and table.count("n/a (one seed)") == 1
    assert "95% paired percentile bootstrap over seeds (10,000 resamples, RNG seed 0)" in table


def test_compare_checks_its_arguments() -> None:
    with pytest.raises(ConfigError, match="jobs must be >= 1, got 0"):
        compare(["grpo"], 1, jobs=0)
    with pytest.raises(ConfigError, match=r"report must be a file name without a folder.*got '\.\./x'"):
        compare(["grpo"], 1, report="../x")
    with pytest.raises(ConfigError, match="baseline 'dapo' is not among the recipes"):
        compare(["grpo", "agpo"], 1, baseline="dapo")
    with pytest.raises(ConfigError, match="name each recipe once"):
        compare(["grpo", "grpo"], 1)
    with pytest.raises(ConfigError, match="unknown task 'chain5'; did you mean 'chain4'"):
        compare(["grpo"], 1, experiment={"task": "chain5"})


@pytest.mark.parametrize(("variants", "message"), [
    ({"rloo": ["grpo", "kl=k1"]}, "variant name 'rloo' is a registered recipe"),
    ({"v": []}, "variant 'v' names no recipe to start from"),
    ({"v": ["grpo", "kl"]}, "variant 'v': expected KEY=VALUE, got 'kl'"),
    ({"v": ["grpo", "learning_rate=1e-3"]}, "variant 'v' sets the training setting 'learning_rate'"),
    ({"w": ["grpo"]}, "variant 'w' is not among the recipes"),
    ({"v": ["grpo", "kll=k3"]}, "kll"),  # an unknown recipe field fails before anything runs
])
def test_variants_are_checked_before_anything_runs(variants, message) -> None:
    with pytest.raises(ConfigError, match=message):
        compare(["grpo", "v"], 1, variants=variants)


def test_finished_runs_are_matched_on_every_setting_but_progress_and_place() -> None:
    config = load_experiment(recipe="grpo", overrides=["steps=5"]).config
    saved = json.loads(json.dumps(config.to_dict())) | {"progress": not config.progress, "output_dir": "/elsewhere"}
    assert _same_config(config, saved)
    del saved["generator"]  # saved before that knob existed: its default is what ran
    assert _same_config(config, saved)
    assert not _same_config(config, saved | {"steps": 6})
    assert not _same_config(config, saved | {"retired_knob": 1})


def test_finished_runs_are_matched_on_the_experiment() -> None:
    exp = load_experiment(recipe="grpo", overrides=["steps=5"])
    summary = {"recipe": json.loads(json.dumps(exp.recipe.to_dict())), "config": exp.config.to_dict()}
    assert same_run(exp, summary)  # written before experiments were recorded: the default task
    assert same_run(exp, summary | {"experiment": exp.identity()})
    chain = load_experiment(recipe="grpo", overrides=["steps=5"], task="chain4")
    assert not same_run(chain, summary) and same_run(chain, summary | {"experiment": chain.identity()})
    rewarded = load_experiment(recipe="grpo", overrides=["steps=5"], rewards=["answer_match"])
    assert not same_run(rewarded, summary)


SMOKE = ["steps=2", "prompts_per_step=4", "group_size=4", "eval_size=4", "eval_every=0", "save_every=0",
         "progress=false", "max_completion_length=48"]


def test_smoke_comparison_pairs_seeds_end_to_end(tmp_path, capfd) -> None:
    out = tmp_path / "cmp"
    result = compare(["agpo", "grpo"], 2, overrides=SMOKE, output_dir=out)
    assert result["baseline"] == "grpo" and result["task"] == "arithmetic3" and result["seeds"] == 2
    assert result["config"]["steps"] == 2 and "seed" not in result["config"]
    saved = json.loads((out / "compare.json").read_text())
    assert saved == json.loads(json.dumps(result))
    rows = {r["recipe"]: r for r in saved["rows"]}
    assert all(r["per_seed"]["seed"] == [0, 1] and len(r["per_seed"]["accuracy_greedy"]) == 2 for r in rows.values())
    # same seed, same evaluation prompts and starting model: the "before" evaluation is shared
    assert rows["agpo"]["per_seed"]["accuracy_greedy_before"] == rows["grpo"]["per_seed"]["accuracy_greedy_before"]
    (agpo,) = saved["paired"]
    assert agpo["recipe"] == "agpo" and set(agpo["metrics"]) == set(PAIRED_METRICS)
    for key, d in agpo["metrics"].items():  # every figure recomputes from the per-seed values in the JSON
        diffs = [a - b for a, b in zip(rows["agpo"]["per_seed"][key], rows["grpo"]["per_seed"][key], strict=True)]
        assert d["diffs"] == pytest.approx(diffs, abs=1e-12)
        assert d["interval"] == pytest.approx(list(bootstrap_interval(diffs)), abs=1e-12)
    report = (out / "compare.md").read_text()
    assert "task `arithmetic3`, 2 seed(s), 2 steps of 4 prompts × 4 completions" in report
    assert "| recipe − grpo | seeds |" in report and "| agpo | 2 |" in report
    assert (out / "compare.png").stat().st_size > 1000
    # a comparison keeps no models and no checkpoints: its directory is a small cache
    assert not list(out.glob("*/seed*/final")) and not list(out.glob("*/seed*/checkpoints"))
    kept = {f.name for f in out.glob("*/seed*/*")}
    assert kept == {"summary.json", "before.json", "metrics.jsonl.gz"}  # metrics packed, no per-run plot
    assert sum(f.stat().st_size for f in out.rglob("*") if f.is_file() and f.suffix != ".png") < 100_000
    capfd.readouterr()

    # the cache, moved elsewhere, is reused as it is: nothing retrains, the numbers are the same
    moved = tmp_path / "stored" / "cmp"
    shutil.copytree(out, moved)
    again = compare(["agpo", "grpo"], 2, overrides=SMOKE, output_dir=moved)
    assert capfd.readouterr().out.count("reusing") == 4
    assert again["rows"] == result["rows"] and again["paired"] == result["paired"]


def test_a_variant_is_its_recipe_with_fields_changed_and_is_compared_by_name(tmp_path, capfd) -> None:
    out = tmp_path / "cmp"
    variants = {"v3_kl": ["agpo_v3", "kl=k3", "kl_coef=0.04"]}
    result = compare(["grpo", "v3_kl"], 1, overrides=SMOKE, output_dir=out, variants=variants, report="ablations")
    assert [r["recipe"] for r in result["rows"]] == ["grpo", "v3_kl"] and result["variants"] == variants
    assert json.loads((out / "ablations.json").read_text()) == json.loads(json.dumps(result))
    assert (out / "ablations.md").exists() and (out / "ablations.png").exists() and not (out / "compare.json").exists()
    recipe = json.loads((out / "v3_kl" / "seed0" / "summary.json").read_text())["recipe"]
    assert recipe["name"] == "agpo_v3" and recipe["kl"] == "k3" and recipe["kl_coef"] == 0.04
    assert recipe["mask_zero_advantage"] is True  # the rest is agpo_v3's
    assert "rlzoo compare: v3_kl seed 0" in capfd.readouterr().out
    # the same name with other fields is another run: retrained, not reused
    compare(["grpo", "v3_kl"], 1, overrides=SMOKE, output_dir=out, variants={"v3_kl": ["agpo_v3", "kl=k1", "kl_coef=0.04"]})
    printed = capfd.readouterr().out
    assert "grpo seed 0: reusing" in printed and "v3_kl seed 0: reusing" not in printed
