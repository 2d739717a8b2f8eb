"""The chip cache on disk and its read-only view, :class:`ChipStack` (format in docs/CONTRACTS.md, "Chip cache").

A cache folder holds ``manifest.json`` (written last, with ``complete`` true), the chips ``chips.u8``
(uint8 ``[N, T, C, H, W]``), the footprint masks ``mask.u8`` (``[N, H, W]``) and the validity ``valid.npy``
(float32 ``[N, T]``). :func:`model.chips.pipeline.ingest` writes it; everything else opens it here.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from model.errors import CacheError

__all__ = ["BANDS", "CHIPS", "FORMAT_VERSION", "MANIFEST", "MASK", "VALID", "ChipStack", "read_manifest"]

FORMAT_VERSION = 1
BANDS = ("red", "green", "blue", "nir")
MANIFEST = "manifest.json"
CHIPS = "chips.u8"
MASK = "mask.u8"
VALID = "valid.npy"


@dataclass(frozen=True)
class ChipStack:
    """A chip cache opened read-only: memory-mapped chips, masks and validity with their manifest.

    Attributes:
        path: the cache folder.
        manifest: the parsed ``manifest.json``.
        building_ids: ids in cache order (row i of every array).
        dates: acquisition dates in timeline order.
        chips: uint8 ``[N, T, C, H, W]`` memmap, bands :data:`BANDS`.
        mask: uint8 ``[N, H, W]`` memmap, 255 inside the footprint.
        valid: float32 ``[N, T]``, valid fraction of each chip.
    """

    path: Path
    manifest: Mapping[str, Any] = field(repr=False)
    building_ids: tuple[str, ...] = field(repr=False)
    dates: tuple[dt.date, ...]
    chips: np.ndarray = field(repr=False)
    mask: np.ndarray = field(repr=False)
    valid: np.ndarray = field(repr=False)
    _positions: Mapping[str, int] = field(repr=False, compare=False)

    @classmethod
    def open(cls, cache: Path) -> ChipStack:
        """Open a complete chip cache.

        Raises:
            CacheError: no manifest, an unknown format, a half-written cache, or files of the wrong size.
        """
        cache = Path(cache)
        manifest = read_manifest(cache)
        if manifest is None:
            raise CacheError(f"{cache}: no chip cache here (no {MANIFEST}); run `striketracker ingest` first")
        if manifest.get("version") != FORMAT_VERSION or not manifest.get("complete"):
            raise CacheError(
                f"{cache}: chip cache of version {manifest.get('version')!r} (complete="
                f"{manifest.get('complete')!r}); expected a complete version {FORMAT_VERSION} cache; re-run ingest"
            )
        ids = tuple(manifest["building_ids"])
        dates = tuple(dt.date.fromisoformat(d) for d in manifest["dates"])
        n, t, c, s = len(ids), len(dates), len(manifest["bands"]), int(manifest["chip_size"])
        for name, size in {CHIPS: n * t * c * s * s, MASK: n * s * s}.items():
            seen = (cache / name).stat().st_size if (cache / name).is_file() else None
            if seen != size:
                raise CacheError(f"{cache / name}: {seen} bytes, expected {size}; re-run ingest")
        try:
            chips = np.memmap(cache / CHIPS, dtype=np.uint8, mode="r", shape=(n, t, c, s, s))
            mask = np.memmap(cache / MASK, dtype=np.uint8, mode="r", shape=(n, s, s))
            valid = np.load(cache / VALID, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise CacheError(f"{cache}: chip files unreadable ({exc}); re-run ingest") from exc
        if valid.shape != (n, t):
            raise CacheError(f"{cache / VALID}: shape {valid.shape}, expected {(n, t)}; re-run ingest")
        return cls(
            path=cache,
            manifest=manifest,
            building_ids=ids,
            dates=dates,
            chips=chips,
            mask=mask,
            valid=valid,
            _positions={bid: i for i, bid in enumerate(ids)},
        )

    @property
    def fingerprint(self) -> str:
        """sha256 over the inputs' checksums and the layout parameters."""
        return str(self.manifest["fingerprint"])

    @property
    def sensors(self) -> tuple[str, ...]:
        return tuple(self.manifest["sensors"])

    @property
    def crs(self) -> str:
        return str(self.manifest["crs"])

    @property
    def resolution(self) -> float:
        return float(self.manifest["resolution"])

    @property
    def chip_size(self) -> int:
        return int(self.manifest["chip_size"])

    @property
    def bands(self) -> tuple[str, ...]:
        return tuple(self.manifest["bands"])

    @property
    def n_dates(self) -> int:
        return len(self.dates)

    def __len__(self) -> int:
        return len(self.building_ids)

    def index(self, building_id: str) -> int:
        """Row of a building in every array.

        Raises:
            KeyError: the id is not in the cache (never ingested, or rejected: see ``manifest["rejects"]``).
        """
        try:
            return self._positions[building_id]
        except KeyError:
            raise KeyError(
                f"building {building_id!r} is not in the chip cache {self.path} "
                "(check the id, or the manifest's rejects)"
            ) from None

    def chip_transform(self, index: int) -> Affine:
        """Affine transform (working CRS) of building ``index``'s chips; pixel (0, 0) is the top-left."""
        x, y = self.manifest["chip_origin"][index]
        return Affine(self.resolution, 0.0, x, 0.0, -self.resolution, y)


def read_manifest(cache: Path) -> dict[str, Any] | None:
    path = cache / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CacheError(f"{path}: unreadable manifest ({exc}); delete the folder and re-run ingest") from exc
    return manifest if isinstance(manifest, dict) else None
