"""The GSM8K example, offline: the same config with a tiny local chat model and a local parquet in
GSM8K's schema, through `rlzoo train`, with the example's own reward file."""

import json
from pathlib import Path

import yaml

from rlzoo.cli import main
from tests.chat_model import save_chat_model, save_gsm8k

ROOT = Path(__file__).resolve().parents[1]


def test_the_gsm8k_example_trains_offline(tmp_path, monkeypatch, capsys) -> None:
    config = yaml.safe_load((ROOT / "examples" / "gsm8k.yaml").read_text())
    config |= {"model": str(save_chat_model(tmp_path / "model")), "dataset": str(save_gsm8k(tmp_path / "gsm8k.parquet")),
               "eval_dataset_split": "train", "dataset_subset": None}
    config.pop("dataset_subset")
    config["train"] |= {"steps": 2, "prompts_per_step": 2, "group_size": 2, "max_completion_length": 8,
                        "eval_every": 0, "eval_size": 2, "save_every": 0, "mixed_precision": "no",
                        "output_dir": str(tmp_path / "run"), "progress": False, "cpu_threads": 1}
    (tmp_path / "gsm8k.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(ROOT)  # the example names its reward file relative to the repository
    assert main(["train", "--config", str(tmp_path / "gsm8k.yaml")]) == 0
    printed = capsys.readouterr().out
    assert "done: 2 steps" in printed
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"reward/answer_match/mean", "reward/answer_line/mean", "reward/accuracy"} <= set(history[-1])
