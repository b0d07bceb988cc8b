"""Learning curves: rolling means of the training episodes, the step at which they reach a
threshold, and the plot (`curve.png` of a run, `curves_<env>.png` of a comparison)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import textgym  # noqa: F401  (registers the envs)
from textgym.runfiles import atomic_path
from textgym_agents.training.logs import WINDOW

__all__ = ["plot_curves", "reference_baseline", "steps_to_threshold"]


def _rolling(values: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Mean of the last ``window`` values at every index (fewer at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(0, idx - window)
    return (sums[idx] - sums[start]) / (idx - start)


def steps_to_threshold(episodes: dict[str, np.ndarray], threshold: float) -> int | None:
    """The first step at which the mean return of the last `WINDOW` episodes reaches
    ``threshold`` (at least `WINDOW` episodes in), or None if it never does."""
    returns = episodes["return"]
    if len(returns) < WINDOW:
        return None
    reached = np.flatnonzero(_rolling(returns)[WINDOW - 1 :] >= threshold)
    return int(episodes["step"][WINDOW - 1 + reached[0]]) if reached.size else None


def reference_baseline(mean_return: float, mean_rm_score: float) -> dict[str, float]:
    """The reference policy's values per `plot_curves` panel (its KL is 0 by definition)."""
    return {"return": float(mean_return), "rm_score": float(mean_rm_score), "kl_per_sequence": 0.0}


def plot_curves(
    curves: dict[str, dict[str, np.ndarray] | list[dict[str, np.ndarray]]],
    path: Path,
    title: str = "",
    baselines: dict[str, dict[str, float]] | None = None,
) -> None:
    """Learning curves to a PNG: the rolling mean training return per label, and for TextGen
    the RM score and the KL per sequence. A label with several runs (seeds) is drawn as their
    mean on a shared step grid, with the min-max band. ``baselines`` (label -> value per
    panel key, e.g. the reference policy's) are drawn as dashed horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {label: runs if isinstance(runs, list) else [runs] for label, runs in curves.items()}
    text = any(np.isfinite(run["rm_score"]).any() for runs in groups.values() for run in runs)
    panels = [("return", "episodic return")]
    if text:
        panels += [("rm_score", "RM score"), ("kl_per_sequence", "KL per sequence (nats)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (key, name) in zip(axes[0], panels):
        for label, runs in groups.items():
            runs = [run for run in runs if len(run["step"]) and np.isfinite(run[key]).any()]
            if not runs:
                continue
            end = min(run["step"][-1] for run in runs)
            grid = np.linspace(0, end, 200)
            ys = np.stack([np.interp(grid, run["step"], _rolling(run[key])) for run in runs])
            (line,) = ax.plot(grid, ys.mean(0), label=label)
            if len(runs) > 1:
                ax.fill_between(grid, ys.min(0), ys.max(0), color=line.get_color(), alpha=0.2)
        for (label, values), style in zip((baselines or {}).items(), ("--", ":", "-.")):
            ax.axhline(values[key], color="0.3", linestyle=style, linewidth=1, label=label)
        ax.set_xlabel("env steps")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=8)
    note = f"rolling mean of the last {WINDOW} training episodes"
    fig.suptitle(f"{title}: {note}" if title else note)
    fig.tight_layout()
    with atomic_path(path) as temp:
        fig.savefig(temp, dpi=100)
    plt.close(fig)
