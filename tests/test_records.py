"""Reading back what a run left behind."""

import json

from rlzoo.records import generation_totals, logged_history, pack_run


def test_generation_totals_count_every_refill_round() -> None:
    # step 1: one round of 4 completions, mean length 10, half correct; step 2: three rounds
    # (12 completions) averaging 20 tokens and a quarter correct
    history = [{"length/mean": 10.0, "reward/accuracy": 0.5, "groups/rounds": 1.0},
               {"length/mean": 20.0, "reward/accuracy": 0.25, "groups/rounds": 3.0}]
    assert generation_totals(history, per_round=4) == {"generated_tokens": 40.0 + 240.0,
                                                        "correct_completions": 2.0 + 3.0}


def test_a_packed_run_reads_back_the_same_history(tmp_path) -> None:
    lines = [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25}]
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        (tmp_path / name / "curves.png").write_bytes(b"png")
        pack_run(tmp_path / name)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["metrics.jsonl.gz"]
    assert logged_history(tmp_path / "a" / "metrics.jsonl") == lines
    # no timestamp inside: the same metrics give the same bytes, so a committed cache does not churn
    assert (tmp_path / "a" / "metrics.jsonl.gz").read_bytes() == (tmp_path / "b" / "metrics.jsonl.gz").read_bytes()
    assert logged_history(tmp_path / "missing" / "metrics.jsonl") == []
