"""The README's generated blocks match the JSON under docs/ (so they cannot go stale), and render right."""

import json

import pytest

from rlzoo.compare import paired_rows
from rlzoo.readme import ROOT, blocks, check, compare_text, main, main_job_text, update


def test_the_readme_matches_the_json_in_docs() -> None:
    found = blocks((ROOT / "README.md").read_text())
    for task in ("arithmetic3", "chain4"):
        assert ("compare", f"docs/grid/{task}/compare.json") in found
    assert ("compare", "docs/grid/arithmetic3/ablations.json") in found
    for task in ("arithmetic3", "chain4"):
        assert ("compare", f"docs/grid/{task}/zoo.json") in found
    assert check() == [], "a README block is stale: run python -m rlzoo.readme"


@pytest.mark.parametrize("source", sorted({s for k, s in blocks((ROOT / "README.md").read_text()) if k == "compare"}))
def test_the_paired_figures_in_docs_recompute_from_their_per_seed_values(source: str) -> None:
    result = json.loads((ROOT / source).read_text())
    if "paired" in result:
        assert paired_rows(result["rows"], result["baseline"]) == result["paired"]


def _result() -> dict:
    per_seed = {"seed": [0, 1], "accuracy_greedy": [0.5, 0.6], "accuracy_sampled": [0.4, 0.4],
                "length_greedy": [30.0, 31.0], "length_sampled": [35.0, 36.0], "tokens_per_correct": [60.0, 62.0]}
    rows = []
    for name, shift in (("grpo", 0.0), ("agpo", 0.1)):
        seeds = {k: (v if k == "seed" else [x + shift for x in v]) for k, v in per_seed.items()}
        row = {"recipe": name, "per_seed": seeds, "all_equal_frac": (0.1, 0.0), "wall_time_s": (100.0, 5.0)}
        for key in per_seed:
            if key != "seed":
                row[key] = (sum(seeds[key]) / 2, 0.0)
                row[key + "_before"] = (0.5, 0.0) if key.startswith("accuracy") else (30.0, 0.0)
        rows.append(row)
    config = {"steps": 120, "prompts_per_step": 16, "group_size": 8, "learning_rate": 1e-4, "eval_size": 2000}
    return {"format": 2, "commit": "abc1234", "task": "chain4", "seeds": 2, "overrides": [], "baseline": "grpo",
            "config": config, "stats": {"method": "paired percentile bootstrap over seeds", "level": 0.95,
                                        "resamples": 10_000, "seed": 0},
            "rows": rows, "paired": paired_rows(rows, "grpo")}


def test_a_comparison_block_has_the_budget_both_tables_and_the_commit() -> None:
    text = compare_text(_result())
    assert text.startswith("task `chain4`, 2 seed(s), 120 steps of 16 prompts × 8 completions, lr 0.0001, "
                           "eval on 2000 held-out prompts; commit `abc1234`; overrides: none.\n\n| recipe |")
    assert "| agpo | 2 | **+10.0 [+10.0, +10.0]** |" in text and "| recipe − grpo |" in text
    assert "Variants" not in text
    named = compare_text(_result() | {"variants": {"agpo": ["agpo_v3", "kl=k3", "kl_coef=0.04"]}})
    assert "overrides: none.\n\nVariants: `agpo` = `agpo_v3 kl=k3 kl_coef=0.04`.\n\n| recipe |" in named


def test_a_stale_block_is_found_and_rewritten(tmp_path, capsys) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "c.json").write_text(json.dumps(_result()))
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- generated: compare docs/c.json -->\nold table\n<!-- end generated -->\n\nprose\n")
    assert main(["--readme", str(readme), "--check"]) == 1
    assert "stale: compare docs/c.json" in capsys.readouterr().out
    assert main(["--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and text.endswith("<!-- end generated -->\n\nprose\n") and "| agpo | 2 |" in text
    assert main(["--readme", str(readme), "--check"]) == 0
    assert update(text, tmp_path) == (text, [])


def test_the_main_job_block_from_a_runs_summary() -> None:
    summary = {"recipe": {"name": "agpo"}, "commit": "78d9884", "steps": 120, "wall_time_s": 280.4,
               "config": {"seed": 0, "prompts_per_step": 16, "group_size": 8, "cpu_threads": 1, "eval_size": 200},
               "experiment": {"task": "arithmetic3"},
               "before": {"eval/greedy/accuracy": 0.685, "eval/greedy/length": 32.9,
                          "eval/sampled/accuracy": 0.51, "eval/sampled/length": 41.7},
               "after": {"eval/greedy/accuracy": 0.71, "eval/greedy/length": 25.1,
                         "eval/sampled/accuracy": 0.525, "eval/sampled/length": 30.6}}
    assert main_job_text(summary) == (
        "**The main job** (`rlzoo train`: agpo on `arithmetic3`, seed 0, 120 steps of 16 prompts × 8 completions, "
        "1 CPU thread, commit `78d9884`; eval on 200 held-out prompts): 280 s of training; greedy eval accuracy "
        "68.5% → 71.0% at 32.9 → 25.1 tokens, sampled eval accuracy 51.0% → 52.5% at 41.7 → 30.6 tokens.\n")
