"""Write a tiny chip cache in the documented format (docs/CONTRACTS.md, "Chip cache") for tests."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

from model.chips import BANDS, CHIPS, FORMAT_VERSION, MANIFEST, MASK, VALID


def write_chip_cache(
    out: Path, *, n_buildings: int = 4, n_dates: int = 5, size: int = 16, seed: int = 0
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A cache of ``n_buildings`` buildings with a square footprint; building 0 is destroyed after date 2.

    Returns:
        ``(building_ids, iso_dates)``.
    """
    rng = np.random.default_rng(seed)
    ids = tuple(f"B{i:03d}" for i in range(n_buildings))
    dates = tuple((dt.date(2017, 2, 3) + dt.timedelta(days=30 * t)).isoformat() for t in range(n_dates))
    chips = rng.integers(60, 120, size=(n_buildings, n_dates, len(BANDS), size, size), dtype=np.uint8)
    lo, hi = size // 4, 3 * size // 4
    chips[:, :, :3, lo:hi, lo:hi] = 200  # a bright roof
    chips[0, 3:, :3, lo:hi, lo:hi] = 40  # rubble after date index 2
    mask = np.zeros((n_buildings, size, size), dtype=np.uint8)
    mask[:, lo:hi, lo:hi] = 255
    valid = np.ones((n_buildings, n_dates), dtype=np.float32)
    valid[1, 1] = 0.0  # one date without data
    out.mkdir(parents=True, exist_ok=True)
    chips.tofile(out / CHIPS)
    mask.tofile(out / MASK)
    np.save(out / VALID, valid)
    manifest = {
        "version": FORMAT_VERSION,
        "complete": True,
        "building_ids": list(ids),
        "dates": list(dates),
        "sensors": ["test"] * n_dates,
        "crs": "EPSG:32637",
        "resolution": 0.5,
        "chip_size": size,
        "bands": list(BANDS),
        "fingerprint": f"test-{seed}-{n_buildings}-{n_dates}-{size}",
        "sources": [],
        "rejects": [],
    }
    (out / MANIFEST).write_text(json.dumps(manifest))
    return ids, dates
