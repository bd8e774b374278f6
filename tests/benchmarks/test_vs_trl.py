"""Smoke test of benchmarks/vs_trl.py (SLOW: ~30-50 s, two subprocesses that each load torch and TRL).

It checks that the script runs end to end and writes what it promises, not the speed itself.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rlzoo.tasks import ASSETS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(not (ASSETS / "config.json").exists(), reason="the shipped warm start is missing")
def test_quick_run_writes_the_table_and_json(tmp_path) -> None:
    pytest.importorskip("trl")
    out = tmp_path / "vs_trl.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "vs_trl.py"), "--quick", "--steps", "1", "--warmup", "1",
           "--threads", "1", "--variants", "trl,rlzoo", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["quick"] is True and re.fullmatch(r"[0-9a-f]{7,40}(\+dirty)?|unknown", data["commit"])
    rows = {r["variant"]: r for r in data["results"]}
    assert set(rows) == {"trl", "rlzoo"} and {r["model"] for r in rows.values()} == {"tiny"}
    assert rows["trl"]["ratio_vs_trl"] == 1.0
    for r in rows.values():
        assert 0 < r["generate_s"] < r["step_s"] and r["peak_rss_mib"] > 50
        assert r["completions_per_s"] == pytest.approx(16 / r["step_s"])  # --quick: 4 prompts x 4
        assert 1 <= r["length_mean"] <= 32 and r["threads"] == 1
    assert "| tiny | 0.53 M | rlzoo (LeanGenerator) |" in proc.stdout  # auto picks the lean loop on CPU
