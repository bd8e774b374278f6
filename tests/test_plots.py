"""Plots: curves with a band over seeds, no duplicate panel for a binary reward, before/after on a run,
the comparison figure with its difference panels."""

from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch

from rlzoo import plots
from rlzoo.plots import (
    _panels,
    _smooth,
    before_after_text,
    binary_reward,
    plot_comparison,
    plot_run,
    plot_runs,
)

PNG = b"\x89PNG\r\n\x1a\n"


def test_smooth_is_a_trailing_mean() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert _smooth(x, 2).tolist() == [[1.0, 1.5, 2.5, 3.5]]
    assert _smooth(x, 1).tolist() == x.tolist()


def _history(reward_offset: float = 0.0) -> list[dict]:
    return [{"step": s, "reward/mean": 0.5 + reward_offset, "reward/accuracy": 0.5, "length/mean": 40 - s}
            for s in range(1, 21)]


def test_plot_runs_writes_a_png(tmp_path) -> None:
    hist = [{"step": s, "reward/mean": s / 10, "reward/accuracy": 0.5, "length/mean": 40 - s} for s in range(1, 21)]
    other = [h | {"reward/mean": h["reward/mean"] + 0.1} for h in hist]
    path = plot_runs({"grpo": [hist, other], "agpo": [hist]}, tmp_path / "p.png", title="t")
    assert path.read_bytes()[:8] == PNG


def test_a_binary_reward_is_not_drawn_twice() -> None:
    binary, shaped = {"grpo": [_history()]}, {"grpo": [_history()], "mine": [_history(0.25)]}
    assert binary_reward(binary) and not binary_reward(shaped) and not binary_reward({"x": [[{"step": 1}]]})
    assert [k for k, _ in _panels(binary, with_eval=False)] == ["reward/accuracy", "length/mean"]
    assert [k for k, _ in _panels(shaped, with_eval=False)] == ["reward/mean", "reward/accuracy", "length/mean"]
    with_eval = {"grpo": [[*_history(), {"step": 20, "eval/greedy/accuracy": 0.7}]]}
    assert [k for k, _ in _panels(with_eval, with_eval=True)] == ["reward/accuracy", "eval/greedy/accuracy", "length/mean"]


def test_a_runs_curves_show_before_and_after(tmp_path, monkeypatch) -> None:
    before = {"eval/greedy/accuracy": 0.685, "eval/greedy/length": 32.9, "eval/sampled/accuracy": 0.51,
              "eval/sampled/length": 41.7}
    after = {"eval/greedy/accuracy": 0.71, "eval/greedy/length": 25.1, "eval/sampled/accuracy": 0.525,
             "eval/sampled/length": 30.6}
    assert before_after_text(before, after) == ["eval greedy: accuracy 68.5% → 71.0%, tokens 32.9 → 25.1",
                                                "eval sampled: accuracy 51.0% → 52.5%, tokens 41.7 → 30.6"]
    assert before_after_text({}, after)[0] == "eval greedy: accuracy 71.0%, tokens 25.1"
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: (figures.append(fig), plt.close(fig), Path(path))[-1])
    plot_run(_history(), tmp_path / "curves.png", title="rlzoo agpo", before=before, after=after)
    (fig,) = figures
    assert "68.5% → 71.0%" in fig._suptitle.get_text() and len(fig.axes) == 2  # accuracy, tokens (binary reward)
    labels = {t.get_text() for ax in fig.axes for t in ax.texts}
    assert {"68.5%", "71.0%", "51.0%", "52.5%", "32.9", "25.1"} <= labels
    monkeypatch.undo()
    assert plot_run(_history(), tmp_path / "c.png", before=before, after=after).read_bytes()[:8] == PNG


def _paired(recipe: str, mean: float, interval: list[float] | None) -> dict:
    metric = {"mean": mean, "interval": interval, "excludes_zero": None if interval is None else interval[0] > 0}
    return {"recipe": recipe, "baseline": "grpo", "metrics": dict.fromkeys(
        ["accuracy_greedy", "accuracy_sampled", "length_greedy", "length_sampled", "tokens_per_correct"], metric)}


@pytest.mark.parametrize("paired", [[_paired("agpo", 0.02, [0.01, 0.03]), _paired("dapo", -0.01, None)], []])
def test_comparison_figure_has_curves_and_difference_panels(tmp_path, monkeypatch, paired) -> None:
    runs = {"grpo": [_history(), _history()], "agpo": [[*_history(), {"step": 20, "eval/greedy/accuracy": 0.7}]]}
    result = {"baseline": "grpo", "paired": paired, "stats": {"level": 0.95}}
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: (figures.append(fig), plt.close(fig), Path(path))[-1])
    plot_comparison(runs, result, tmp_path / "compare.png", title="t")
    (fig,) = figures
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["accuracy (sampled, training)", "eval accuracy (greedy)", "completion tokens (training)"]
    assert titles[3] == "Δ accuracy vs grpo (95% interval over seeds)" and len(titles) == 6
    if paired:
        assert [t.get_text() for t in fig.axes[3].get_yticklabels()] == ["agpo", "dapo"]
    monkeypatch.undo()
    assert plot_comparison(runs, result, tmp_path / "c.png").read_bytes()[:8] == PNG
