"""Preview PNG of a scenario: the same window on several dates, with footprints and true states."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import rasterio
from PIL import Image
from rasterio.windows import from_bounds

from active_learning.truth import load_truth

__all__ = ["write_preview"]


def write_preview(
    scenario: Path,
    png: Path,
    centre: tuple[float, float] | None = None,
    size_m: float = 120.0,
    date_indices: list[int] | None = None,
    dpi: int = 80,
) -> Path:
    """Write a PNG grid of RGB crops (``size_m`` metres around ``centre``) on the chosen dates."""
    truth = load_truth(scenario)
    manifest = pd.read_csv(scenario / "manifest.csv")
    if centre is None:
        bounds = truth.scenario["bounds"]
        centre = ((bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2)
    cx, cy = centre
    box = (cx - size_m / 2, cy - size_m / 2, cx + size_m / 2, cy + size_m / 2)
    indices = date_indices if date_indices is not None else list(range(len(manifest)))
    cols = min(5, len(indices))
    rows = int(np.ceil(len(indices) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.35 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, t in zip(axes.ravel(), indices, strict=False):
        row = manifest.iloc[t]
        with rasterio.open(scenario / row["path"]) as ds:
            rgb = ds.read(
                [1, 2, 3], window=from_bounds(*box, transform=ds.transform), boundless=True, fill_value=0
            )
        ax.imshow(np.moveaxis(rgb, 0, -1), interpolation="nearest")
        ax.set_title(f"{t}: {row['date']} {row['sensor']}", fontsize=8)
    fig.tight_layout(pad=0.8)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=dpi)
    plt.close(fig)
    # an adaptive 256-colour palette keeps the committed preview small
    with Image.open(png) as im:
        im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(png, optimize=True)
    return png
