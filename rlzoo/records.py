"""What a run leaves behind, read back: its metrics history, its generation totals, its commit."""

import gzip
import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def logged_history(path: Path) -> list[dict[str, Any]]:
    """The step entries of ``metrics.jsonl`` (the whole run, after a resume), or of the gzipped copy
    :func:`pack_run` leaves (``metrics.jsonl.gz``) when there is no plain file."""
    packed = path.with_name(path.name + ".gz")
    if path.exists():
        text = path.read_text()
    elif packed.exists():
        text = gzip.decompress(packed.read_bytes()).decode()
    else:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def pack_run(out: Path) -> None:
    """Shrink a finished comparison run to what a reuse and the comparison read: ``metrics.jsonl``
    gzipped (byte-identical for identical metrics: no timestamp), ``curves.png`` removed."""
    metrics = out / "metrics.jsonl"
    if metrics.exists():
        (out / "metrics.jsonl.gz").write_bytes(gzip.compress(metrics.read_bytes(), compresslevel=9, mtime=0))
        metrics.unlink()
    (out / "curves.png").unlink(missing_ok=True)


def generation_totals(history: Sequence[Mapping[str, float | int]], per_round: int) -> dict[str, float]:
    """Completion tokens generated and correct completions over a run, refill rounds included.

    Every generation round of a step samples ``per_round`` completions; the step's ``length/mean``
    and ``reward/accuracy`` are means over its ``groups/rounds`` rounds.
    """
    rounds = [h.get("groups/rounds", 1.0) * per_round for h in history]
    return {
        "generated_tokens": sum(h.get("length/mean", 0.0) * r for h, r in zip(history, rounds, strict=True)),
        "correct_completions": sum(h.get("reward/accuracy", 0.0) * r for h, r in zip(history, rounds, strict=True)),
    }


PACKAGE = Path(__file__).resolve().parent


def git_commit(package: Path = PACKAGE) -> str:
    """The commit of the code that ran (``unknown`` outside git), ``+dirty`` where the package's tracked
    files differ from it. Only the package counts: a comparison writes its tables and runs into the
    checkout (``docs/grid``) while it trains, which changes no code."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=package)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "."], capture_output=True, text=True,
            cwd=package,
        )
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
