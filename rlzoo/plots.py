"""PNG plots of training curves: one run, or several recipes side by side with a band over seeds."""

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

PANELS = (("reward/mean", "reward"), ("reward/accuracy", "accuracy (sampled)"), ("length/mean", "completion tokens"))


def _series(history: Sequence[Mapping[str, float | int]], key: str) -> tuple[list[float | int], list[float | int]]:
    rows = [(h["step"], h[key]) for h in history if key in h]
    return [r[0] for r in rows], [r[1] for r in rows]


def _smooth(values: torch.Tensor, window: int) -> torch.Tensor:
    """Trailing moving average along the last axis (shorter window at the start)."""
    if window <= 1 or values.shape[-1] < 2:
        return values
    csum = values.cumsum(-1)
    shifted = torch.cat([torch.zeros_like(csum[..., :window]), csum[..., :-window]], -1)[..., : values.shape[-1]]
    counts = torch.arange(1, values.shape[-1] + 1).clamp(max=window)
    return (csum - shifted) / counts


def plot_runs(
    runs: Mapping[str, Sequence[Sequence[Mapping[str, float | int]]]],
    path: str | Path,
    *,
    title: str = "",
    smooth: int = 10,
) -> Path:
    """Curves of reward, accuracy and length per step: one line per run name, a band over its seeds.

    ``runs`` maps a label (a recipe) to the metric histories of its seeds.
    """
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 3.6), constrained_layout=True)
    for (key, label), ax in zip(PANELS, axes, strict=True):
        for name, seeds in runs.items():
            curves = [_series(h, key) for h in seeds]
            curves = [c for c in curves if c[0]]
            if not curves:
                continue
            width = min(len(c[1]) for c in curves)
            steps = curves[0][0][:width]
            values = _smooth(torch.tensor([c[1][:width] for c in curves], dtype=torch.float64), smooth)
            mean = values.mean(0)
            (line,) = ax.plot(steps, mean.tolist(), label=name)
            if len(curves) > 1:
                std = values.std(0)
                ax.fill_between(steps, (mean - std).tolist(), (mean + std).tolist(), color=line.get_color(), alpha=0.2)
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
