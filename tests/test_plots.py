"""Plots render curves with a band over seeds."""

import torch

from rlzoo.plots import _smooth, plot_runs


def test_smooth_is_a_trailing_mean() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert _smooth(x, 2).tolist() == [[1.0, 1.5, 2.5, 3.5]]
    assert _smooth(x, 1).tolist() == x.tolist()


def test_plot_runs_writes_a_png(tmp_path) -> None:
    hist = [{"step": s, "reward/mean": s / 10, "reward/accuracy": 0.5, "length/mean": 40 - s} for s in range(1, 21)]
    other = [h | {"reward/mean": h["reward/mean"] + 0.1} for h in hist]
    path = plot_runs({"grpo": [hist, other], "agpo": [hist]}, tmp_path / "p.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
