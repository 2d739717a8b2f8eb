"""Figures people look at: chip stacks across the timeline."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from model.chips import ChipStack

__all__ = ["plot_chip_stacks"]


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
