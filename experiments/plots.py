"""Figures people look at: chip stacks across the timeline, and the destruction timeline of a city."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from model.calibration import reported_gap
from model.chips import ChipStack

__all__ = ["plot_chip_stacks", "plot_destruction_timeline"]


def plot_chip_stacks(
    stack: ChipStack, png: Path, true_gaps: Mapping[str, int] | None = None, n_buildings: int = 6
) -> Path:
    """Plot the RGB chips of a few buildings across all dates, with the footprint outline and invalid dates.

    With ``true_gaps`` the first damaged date of each building gets a red edge, and buildings destroyed
    mid-timeline are picked first so the change shows; without, buildings are spread over the stack.
    """
    true_gaps = true_gaps or {}
    n_dates = len(stack.dates)
    mid = [b for b in stack.building_ids if 2 <= true_gaps.get(b, -1) <= n_dates - 2]
    spread = [
        stack.building_ids[int(i)] for i in np.linspace(0, len(stack) - 1, num=min(n_buildings, len(stack)))
    ]
    chosen = list(dict.fromkeys(mid + spread))[:n_buildings]
    fig, axes = plt.subplots(len(chosen), n_dates, figsize=(1.1 * n_dates, 1.2 * len(chosen)), squeeze=False)
    for row, building_id in enumerate(chosen):
        i = stack.index(building_id)
        gap = true_gaps.get(building_id)
        for t in range(n_dates):
            ax = axes[row, t]
            rgb = np.moveaxis(np.asarray(stack.chips[i, t, :3]), 0, -1)
            ax.imshow(rgb, interpolation="nearest")
            ax.contour(np.asarray(stack.mask[i]) > 0, levels=[0.5], colors="yellow", linewidths=0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"valid {stack.valid[i, t]:.2f}", fontsize=5)
            if stack.valid[i, t] < 0.5:
                ax.set_facecolor("black")
                ax.text(0.5, 0.5, "invalid", color="white", ha="center", va="center", transform=ax.transAxes)
            if gap is not None and t == gap:
                for side in ("left",):
                    ax.spines[side].set_color("red")
                    ax.spines[side].set_linewidth(3)
            if row == 0:
                ax.set_title(stack.dates[t].isoformat(), fontsize=6)
            if t == 0:
                ax.set_ylabel(building_id if gap is None else f"{building_id}\ngap {gap}", fontsize=6)
    fig.suptitle(
        f"Chip stacks, {len(stack)} buildings x {n_dates} dates ({stack.crs}, {stack.resolution} m); "
        "yellow: footprint" + ("; red edge: first date damaged in truth" if true_gaps else ""),
        fontsize=8,
    )
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def plot_destruction_timeline(
    probs: np.ndarray,
    dates: Sequence[dt.date],
    png: Path,
    true_gap: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """Buildings destroyed in each gap between two images: the model's expected and reported counts.

    Args:
        probs: ``[N, T + 1]`` gap posteriors of every building.
        dates: the ``T`` acquisition dates.
        png: output file.
        true_gap: known gaps (a scenario's truth), drawn beside the model when given.
        title: figure title.

    The expected count of a gap is the sum of its posterior probabilities over the buildings; the reported count
    is how many buildings are dated to it (:func:`model.calibration.reported_gap`). Gap ``T`` (not damaged by
    the last image) is left out; its count is in the legend.
    """
    t = len(dates)
    expected = probs[:, :t].sum(axis=0)
    reported = np.bincount(reported_gap(probs), minlength=t + 1)
    labels = [f"before {dates[0]:%d %b}"] + [f"{dates[g - 1]:%d %b}-{dates[g]:%d %b}" for g in range(1, t)]
    x = np.arange(t)
    arms = [("model, reported gap", reported[:t], "tab:red"), ("model, expected", expected, "tab:orange")]
    if true_gap is not None:
        arms.append(("truth", np.bincount(np.asarray(true_gap), minlength=t + 1)[:t], "tab:gray"))
    width = 0.8 / len(arms)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.7 * t), 4.2))
    for k, (name, counts, colour) in enumerate(arms):
        ax.bar(x + (k - (len(arms) - 1) / 2) * width, counts, width, label=name, color=colour)
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("buildings destroyed in the gap")
    ax.legend(title=f"{int(reported[t])} of {len(probs)} buildings dated intact to the end", fontsize=8)
    ax.set_title(title or f"Destruction timeline, {len(probs)} buildings", fontsize=10)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
