"""PNG plots: one training run (``curves.png``), or a comparison of recipes with a band over seeds and
the paired differences to a baseline (``compare.png``).

With a binary reward (every logged ``reward/mean`` equals ``reward/accuracy``) the reward panel is
left out: it would be the accuracy panel drawn twice.
"""

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

History = Sequence[Mapping[str, Any]]

PANELS = (("reward/mean", "reward"), ("reward/accuracy", "accuracy (sampled, training)"),
          ("length/mean", "completion tokens (training)"))
EVAL_PANEL = ("eval/greedy/accuracy", "eval accuracy (greedy)")
# paired-difference panels: (title, unit, [(metric key, label)])
DIFF_PANELS = (
    ("accuracy", "points", (("accuracy_greedy", "greedy"), ("accuracy_sampled", "sampled"))),
    ("eval tokens", "tokens", (("length_greedy", "greedy"), ("length_sampled", "sampled"))),
    ("train tokens per correct", "tokens", (("tokens_per_correct", "training"),)),
)


def _series(history: History, key: str) -> tuple[list[float | int], list[float | int]]:
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


def binary_reward(runs: Mapping[str, Sequence[History]]) -> bool:
    """True when every step that logs both has ``reward/mean == reward/accuracy`` (a 0/1 correctness reward)."""
    pairs = [(h["reward/mean"], h["reward/accuracy"]) for seeds in runs.values() for hist in seeds for h in hist
             if "reward/mean" in h and "reward/accuracy" in h]
    return bool(pairs) and all(math.isclose(r, a, abs_tol=1e-9) for r, a in pairs)


def _panels(runs: Mapping[str, Sequence[History]], *, with_eval: bool) -> list[tuple[str, str]]:
    keys = {k for seeds in runs.values() for hist in seeds for h in hist for k in h}
    panels = [p for p in PANELS if p[0] in keys and not (p[0] == "reward/mean" and binary_reward(runs))]
    if with_eval and EVAL_PANEL[0] in keys:
        panels.insert(len(panels) - 1 if panels and panels[-1][0] == "length/mean" else len(panels), EVAL_PANEL)
    return panels or list(PANELS[1:])


def _draw_curves(ax: Any, runs: Mapping[str, Sequence[History]], key: str, smooth: int) -> dict[str, Any]:
    """One line per run name (mean over its seeds) with a ±1 sd band; returns name -> colour."""
    colours = {}
    for name, seeds in runs.items():
        curves = [c for c in (_series(h, key) for h in seeds) if c[0]]
        if not curves:
            continue
        width = min(len(c[1]) for c in curves)
        steps = curves[0][0][:width]
        values = torch.tensor([c[1][:width] for c in curves], dtype=torch.float64)
        values = _smooth(values, smooth) if not key.startswith("eval/") else values
        mean = values.mean(0)
        marker = "o" if key.startswith("eval/") else None
        (line,) = ax.plot(steps, mean.tolist(), label=name, marker=marker, markersize=3)
        colours[name] = line.get_color()
        if len(curves) > 1:
            std = values.std(0)
            ax.fill_between(steps, (mean - std).tolist(), (mean + std).tolist(), color=line.get_color(), alpha=0.2)
    return colours


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_runs(
    runs: Mapping[str, Sequence[History]],
    path: str | Path,
    *,
    title: str = "",
    smooth: int = 10,
) -> Path:
    """Curves of reward (unless binary), accuracy and length per step: one line per run name, a band over its seeds.

    ``runs`` maps a label (a recipe) to the metric histories of its seeds.
    """
    panels = _panels(runs, with_eval=False)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), constrained_layout=True, squeeze=False)
    for (key, label), ax in zip(panels, axes[0], strict=True):
        _draw_curves(ax, runs, key, smooth)
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def before_after_text(before: Mapping[str, float], after: Mapping[str, float]) -> list[str]:
    """``eval greedy: accuracy 68.5% -> 71.0%, tokens 32.9 -> 25.1`` per evaluation mode both hold."""
    lines = []
    for mode in ("greedy", "sampled"):
        acc, length = f"eval/{mode}/accuracy", f"eval/{mode}/length"
        if acc in after:
            was_acc = f"{before[acc]:.1%} → " if acc in before else ""
            was_len = f"{before[length]:.1f} → " if length in before else ""
            lines.append(f"eval {mode}: accuracy {was_acc}{after[acc]:.1%}, tokens {was_len}{after[length]:.1f}")
    return lines


def plot_run(
    history: History,
    path: str | Path,
    *,
    title: str = "",
    before: Mapping[str, float] | None = None,
    after: Mapping[str, float] | None = None,
    smooth: int = 10,
) -> Path:
    """``curves.png`` of one training run: the panels of :func:`plot_runs`, the held-out evaluation
    before (step 0), at the logged evaluation steps and after (the last step) on the accuracy and
    length panels, the before and after values written beside their points and under the title."""
    before, after = dict(before or {}), dict(after or {})
    runs = {"training": [history]}
    panels = _panels(runs, with_eval=False)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.9), constrained_layout=True, squeeze=False)
    last = max((h["step"] for h in history), default=0)
    for (key, label), ax in zip(panels, axes[0], strict=True):
        _draw_curves(ax, runs, key, smooth)
        metric = {"reward/accuracy": "accuracy", "length/mean": "length"}.get(key)
        for mode, marker in (("greedy", "^"), ("sampled", "o")):
            name = f"eval/{mode}/{metric}"
            logged = {h["step"]: h[name] for h in history if metric and name in h}  # periodic evaluations
            ends = {x: d[name] for x, d in ((0, before), (last, after)) if metric and name in d}
            points = sorted((logged | ends).items())
            if points:
                ax.plot(*zip(*points, strict=True), marker=marker, linestyle=":", color="black", label=f"eval {mode}")
                for x, y in ends.items():
                    text = f"{y:.1%}" if metric == "accuracy" else f"{y:.1f}"
                    ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if metric:
            ax.legend(fontsize=8)
    lines = before_after_text(before, after)
    fig.suptitle("\n".join([title, *lines]) if title else "\n".join(lines), fontsize=10)
    return _save(fig, path)


def _draw_differences(ax: Any, paired: Sequence[Mapping[str, Any]], metrics: Sequence[tuple[str, str]], scale: float,
                      colours: Mapping[str, Any]) -> None:
    """Per recipe (one row each), the mean paired difference of each metric with its interval as a bar."""
    names = [p["recipe"] for p in paired]
    offsets = [0.0] if len(metrics) == 1 else [(i - (len(metrics) - 1) / 2) * 0.3 for i in range(len(metrics))]
    for (key, label), offset, marker in zip(metrics, offsets, ("o", "s", "D"), strict=False):
        for row, entry in enumerate(paired):
            d = entry["metrics"].get(key)
            if d is None:
                continue
            y = row + offset
            interval = d.get("interval")
            colour = colours.get(entry["recipe"], "black")
            if interval is not None:
                ax.plot([interval[0] * scale, interval[1] * scale], [y, y], color=colour, linewidth=2)
            filled = bool(d.get("excludes_zero"))
            ax.plot([d["mean"] * scale], [y], marker=marker, color=colour, markerfacecolor=colour if filled else "white",
                    linestyle="none", label=label if row == 0 else None)
    ax.axvline(0.0, color="grey", linewidth=1)
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.invert_yaxis()
    ax.grid(alpha=0.3, axis="x")
    if len(metrics) > 1:
        ax.legend(fontsize=7, loc="best")


def plot_comparison(
    runs: Mapping[str, Sequence[History]],
    result: Mapping[str, Any],
    path: str | Path,
    *,
    title: str = "",
    smooth: int = 10,
) -> Path:
    """The comparison figure of one task: curves over steps with a band over seeds (top), and the paired
    difference of each recipe to the baseline with its interval (bottom; a filled marker when the
    interval excludes 0, a hollow one when it does not or with one seed)."""
    panels = _panels(runs, with_eval=True)
    fig = plt.figure(figsize=(5 * max(len(panels), len(DIFF_PANELS)), 8.2), constrained_layout=True)
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.0, 1.1])
    axes = top.subplots(1, len(panels), squeeze=False)[0]
    colours: dict[str, Any] = {}
    for (key, label), ax in zip(panels, axes, strict=True):
        colours |= _draw_curves(ax, runs, key, smooth)
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    paired = result.get("paired") or []
    baseline = result.get("baseline", "baseline")
    diff_axes = bottom.subplots(1, len(DIFF_PANELS), squeeze=False)[0]
    for (name, unit, metrics), ax in zip(DIFF_PANELS, diff_axes, strict=True):
        scale = 100.0 if unit == "points" else 1.0
        if paired:
            _draw_differences(ax, paired, metrics, scale, colours)
        else:
            ax.text(0.5, 0.5, "no recipe to pair with the baseline", ha="center", va="center", transform=ax.transAxes)
        level = f"{result['stats']['level']:.0%} " if "stats" in result else ""
        ax.set_title(f"Δ {name} vs {baseline} ({level}interval over seeds)", fontsize=10)
        ax.set_xlabel(f"difference ({unit})")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
