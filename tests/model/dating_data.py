"""Tiny synthetic chip stacks with a known destruction gap per building, for the dating tests.

Each building is a bright square roof on darker ground; from its gap on, the roof turns into dark, speckled
rubble. Every date gets its own illumination gain and a little noise; a few chips are clouded (white, invalid).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

from model.chips import BANDS, CHIPS, FORMAT_VERSION, MASK, VALID
from model.datamodule import ChipArrays, GapLabels


def synthetic_chips(
    rng: np.random.Generator, n: int = 24, n_dates: int = 6, size: int = 16, cloud_rate: float = 0.1
) -> tuple[ChipArrays, np.ndarray]:
    """``n`` buildings x ``n_dates`` dates of ``size``-pixel 4-band chips and their true gaps."""
    dates = tuple(dt.date(2017, 2, 3) + dt.timedelta(days=20 * t) for t in range(n_dates))
    gaps = rng.integers(0, n_dates + 1, size=n)
    chips = np.empty((n, n_dates, 4, size, size), dtype=np.uint8)
    mask = np.zeros((n, size, size), dtype=np.uint8)
    lo, hi = size // 4, size - size // 4
    mask[:, lo:hi, lo:hi] = 255
    valid = np.ones((n, n_dates), dtype=np.float32)
    for i in range(n):
        for t in range(n_dates):
            gain = rng.uniform(0.8, 1.2)
            img = np.full((4, size, size), 70.0)
            if t < gaps[i]:
                img[:, lo:hi, lo:hi] = 200.0
            else:
                img[:, lo:hi, lo:hi] = rng.uniform(30, 120, size=(4, hi - lo, hi - lo))
            img = img * gain + rng.normal(0, 4, size=img.shape)
            if rng.random() < cloud_rate:
                img[:] = 250.0
                valid[i, t] = 0.0
            chips[i, t] = np.clip(img, 0, 255).astype(np.uint8)
    origins = np.stack([np.arange(n) * 100.0, np.zeros(n)], axis=1)
    arrays = ChipArrays(
        building_ids=tuple(f"B{i:03d}" for i in range(n)),
        dates=dates,
        chips=chips,
        mask=mask,
        valid=valid,
        fingerprint="synthetic-" + str(n),
        origins=origins,
    )
    return arrays, gaps


def exact_labels(arrays: ChipArrays, gaps: np.ndarray, blocks: int = 4) -> GapLabels:
    """Interval labels pinning each building's true gap, spread over ``blocks`` spatial blocks."""
    t = arrays.n_dates
    last = [int(g) - 1 if g >= 1 else None for g in gaps]
    first = [int(g) if g < t else None for g in gaps]
    grade = [1 if g < t else -1 for g in gaps]
    block_ids = [f"k{i % blocks}" for i in range(len(gaps))]
    return GapLabels.from_intervals(arrays.building_ids, last, first, t, grade, block_ids)


def write_cache(arrays: ChipArrays, folder: Path) -> Path:
    """Write arrays as a chip cache folder in the contract format (docs/CONTRACTS.md, "Chip cache")."""
    folder.mkdir(parents=True, exist_ok=True)
    n, t, c, s, _ = arrays.chips.shape
    np.asarray(arrays.chips, dtype=np.uint8).tofile(folder / CHIPS)
    np.asarray(arrays.mask, dtype=np.uint8).tofile(folder / MASK)
    np.save(folder / VALID, np.asarray(arrays.valid, dtype=np.float32))
    origins = arrays.origins if arrays.origins is not None else np.zeros((n, 2))
    manifest = {
        "format": "striketracker-chips",
        "version": FORMAT_VERSION,
        "complete": True,
        "building_ids": list(arrays.building_ids),
        "dates": [d.isoformat() for d in arrays.dates],
        "sensors": ["synthetic"] * t,
        "crs": "EPSG:32637",
        "resolution": 0.5,
        "chip_size": s,
        "bands": list(BANDS[:c]),
        "chip_origin": origins.tolist(),
        "fingerprint": arrays.fingerprint,
        "rejects": [],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder
