"""The rlzoo command: readable listings, helpful errors, quick train and compare runs."""

import json

import pytest

from rlzoo.cli import KINDS, main, registry
from rlzoo.records import git_commit

QUICK = ["--set", "steps=2", "--set", "prompts_per_step=4", "--set", "group_size=4", "--set", "eval_size=8",
         "--set", "eval_every=0", "--set", "save_every=0", "--set", "progress=false"]


def test_list_prints_every_kind_with_summaries(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for kind in KINDS:
        assert out.count(f"{kind} (") == 1
        for name in registry(kind).names():
            assert f"  {name} — " in out


def test_list_verbose_shows_parameters_and_glob(capsys) -> None:
    assert main(["list", "estimators", "grpo*", "-v"]) == 0
    out = capsys.readouterr().out
    assert "grpo — GRPO" in out and "scale: Literal['group', 'batch', 'none'] = 'group'" in out


def test_help_lists_commands(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("list", "recipes", "train", "compare"):
        assert command in out


def test_recipes_show_applies_overrides(capsys) -> None:
    assert main(["recipes", "show", "grpo", "--set", "loss.eps_high=0.28"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# grpo: GRPO") and "eps_high: 0.28" in out


def test_train_reports_every_config_problem_before_loading(capsys) -> None:
    code = main(["train", "--recipe", "gpro", "--set", "steps=0", "--set", "loss.eps=1", "--model", "/nowhere"])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown recipe 'gpro'; did you mean 'grpo'" in err
    assert "steps=0 must be >= 1" in err
    assert "model '/nowhere' is neither a local directory nor a hub id" in err
    assert "name both --model and --dataset" in err


def test_quick_train_on_the_embedded_task(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--output-dir", str(out), *QUICK]) == 0
    captured = capsys.readouterr()
    text = captured.out
    assert "recipe 'agpo' on the embedded arithmetic task" in text and "eval greedy" in text
    assert "generator auto: lean (model_type 'llama' on cpu" in captured.err  # rlzoo's INFO lines are shown
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and 0.0 <= summary["after"]["eval/greedy/accuracy"] <= 1.0
    assert (out / "curves.png").stat().st_size > 1000
    assert (out / "final" / "config.json").exists()


def test_list_shows_a_plain_function_plugin(tmp_path, monkeypatch, capsys) -> None:
    import sys

    from rlzoo import rewards
    from rlzoo.registry import Registry
    from tests.test_registry import PLUGIN_FUNCTIONS, write_plugin

    write_plugin(tmp_path, PLUGIN_FUNCTIONS, "fmt = toyplugin:fmt", group="rlzoo.rewards")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "toyplugin", raising=False)
    fresh = Registry(rewards.REWARD_FUNCS.kind, entry_point_group="rlzoo.rewards", functions=True)  # plugins not yet loaded
    monkeypatch.setattr(rewards, "REWARD_FUNCS", fresh)
    assert main(["list"]) == 0 and main(["list", "rewards", "-v"]) == 0
    out = capsys.readouterr().out
    assert "  fmt — A third-party reward function.\n" in out and "estimators (" in out
    assert "  fmt — A third-party reward function.\n      (no parameters)" in out


def test_train_with_a_reward_function_from_a_users_file(tmp_path, capsys) -> None:
    rewards = tmp_path / "my_rewards.py"
    rewards.write_text("def brevity(prompts, completions, **columns):\n"
                       "    return [1.0 / (1 + len(c)) for c in completions]\n")
    out = tmp_path / "run"
    args = ["train", "--recipe", "grpo", "--reward", "answer_match", "--reward", f"{rewards}:brevity@0.5",
            "--output-dir", str(out), *QUICK, "--set", "steps=1", "--set", "max_completion_length=16"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 1 and summary["config"]["reward_weights"] == [1.0, 0.5]
    step = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert 0 < step["reward/brevity/mean"] <= 1 and "reward/answer_match/mean" in step
    capsys.readouterr()
    assert main(["train", "--reward", f"{rewards}:brevty", "--reward", "answer_match@x", *QUICK]) == 2
    err = capsys.readouterr().err
    assert f"  - reward '{rewards}:brevty': '{rewards}' has no attribute 'brevty' (did you mean 'brevity'?)" in err
    assert "  - reward 'answer_match@x': weight 'x' after '@' must be a finite number" in err


def test_quick_compare(tmp_path, capfd) -> None:
    out = tmp_path / "cmp"
    assert main(["compare", "--recipes", "grpo,agpo", "--seeds", "1", "--output-dir", str(out), *QUICK]) == 0
    table = (out / "compare.md").read_text()
    assert "| grpo |" in table and "| agpo |" in table
    result = json.loads((out / "compare.json").read_text())
    assert [r["recipe"] for r in result["rows"]] == ["grpo", "agpo"] and result["commit"] == git_commit()
    assert (out / "compare.png").stat().st_size > 1000
    capfd.readouterr()

    # the same comparison again, two at a time: both finished runs are reused, nothing is retrained,
    # and the table names the commit each run was trained on
    summary = out / "grpo" / "seed0" / "summary.json"
    summary.write_text(json.dumps(json.loads(summary.read_text()) | {"commit": "0000000"}))
    stamps = [(out / r / "seed0" / "summary.json").stat().st_mtime_ns for r in ("grpo", "agpo")]
    assert main(["compare", "--recipes", "grpo,agpo", "--jobs", "2", "--output-dir", str(out), *QUICK]) == 0
    assert capfd.readouterr().out.count("reusing") == 2
    assert [(out / r / "seed0" / "summary.json").stat().st_mtime_ns for r in ("grpo", "agpo")] == stamps
    assert (out / "compare.md").read_text() == table.replace(git_commit(), ", ".join(sorted(["0000000", git_commit()])))


def test_train_on_a_parquet_with_a_prompt_column(tmp_path, capsys) -> None:
    import datasets

    from tests.trainer.helpers import rows, tiny

    model, tok = tiny()
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    data = tmp_path / "gsm8k.parquet"  # GSM8K's columns, prompts the tiny model can read
    datasets.Dataset.from_list([{"question": r["prompt"], "answer": f"so\n#### {r['answer']}"} for r in rows(8)]).to_parquet(str(data))
    out = tmp_path / "run"
    args = ["train", "--recipe", "grpo", "--model", str(tmp_path / "model"), "--dataset", str(data),
            "--prompt-column", "question", "--eval-dataset", str(data), "--output-dir", str(out),
            *QUICK, "--set", "steps=1", "--set", "max_completion_length=8"]
    assert main(args) == 0
    assert f"on {tmp_path / 'model'} on {data}" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 1 and "eval/greedy/accuracy" in summary["after"]


def test_train_reports_a_missing_prompt_column_before_loading_the_model(tmp_path, capsys) -> None:
    import datasets

    data = tmp_path / "gsm8k.parquet"
    datasets.Dataset.from_list([{"question": "1+2=", "answer": "#### 3"}]).to_parquet(str(data))
    (tmp_path / "model").mkdir()  # no model in it: reading the data must fail first
    assert main(["train", "--model", str(tmp_path / "model"), "--dataset", str(data), *QUICK]) == 2
    err = capsys.readouterr().err
    assert "has no column 'prompt'; its columns are question, answer; pass prompt_column=" in err
    assert "--prompt-column" in err


def test_quick_train_on_the_second_task(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--task", "chain4", "--recipe", "grpo", "--output-dir", str(out), *QUICK, "--set", "steps=1"]) == 0
    assert "on the embedded task 'chain4' (four-number sums" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["experiment"]["task"] == "chain4" and summary["steps"] == 1
    assert main(["train", "--task", "chain5", *QUICK]) == 2
    assert "unknown task 'chain5'; did you mean 'chain4'?" in capsys.readouterr().err


def test_compare_takes_what_train_takes(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = capsys.readouterr().out
    for option in ("--task", "--model", "--dataset", "--config", "--reward", "--set", "--eval-split", "--baseline",
                   "--prompt-column", "--keep-models", "--variant"):
        assert option in text
    from tests.trainer.helpers import rows, tiny

    model, tok = tiny()
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows(8)))
    out = tmp_path / "cmp"
    args = ["compare", "--recipes", "rloo", "--model", str(tmp_path / "model"), "--dataset", str(data),
            "--eval-dataset", str(data), "--reward", "answer_match", "--output-dir", str(out), *QUICK,
            "--set", "steps=1", "--set", "max_completion_length=8", "--variant", "rloo_tm", "rloo", "aggregation=token_mean"]
    assert main(args) == 0
    result = json.loads((out / "compare.json").read_text())
    assert [r["recipe"] for r in result["rows"]] == ["rloo", "rloo_tm"]
    assert json.loads((out / "rloo_tm" / "seed0" / "summary.json").read_text())["recipe"]["aggregation"] == "token_mean"
    assert result["task"] is None and result["experiment"]["model"] == str(tmp_path / "model")
    assert result["experiment"]["reward_funcs"] == ["answer_match"] and result["baseline"] == "rloo"
    assert "your model and data, 1 seed(s)" in capsys.readouterr().out
