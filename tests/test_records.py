"""Reading back what a run left behind."""

import json
import subprocess

from rlzoo.records import generation_totals, git_commit, logged_history, pack_run


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


def test_the_commit_is_dirty_only_when_the_code_changed(tmp_path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                              capture_output=True, text=True).stdout.strip()

    (tmp_path / "pkg").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "pkg" / "code.py").write_text("x = 1\n")
    (tmp_path / "docs" / "compare.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "one")
    head = git("rev-parse", "--short", "HEAD")
    (tmp_path / "docs" / "compare.json").write_text('{"rows": []}\n')  # what a comparison writes as it runs
    assert git_commit(tmp_path / "pkg") == head
    (tmp_path / "pkg" / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path / "pkg") == head + "+dirty"
