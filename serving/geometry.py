"""Where each building is, for maps and exports: footprints in EPSG:4326, read once per chip cache.

The chip cache's manifest names the footprint file it was cut from (``footprints.path``, often relative to the
folder ingest ran in) and the working CRS. The footprints are read with :func:`model.buildings.read_footprints`
in that CRS (so ids and point squares match the chips) and reprojected to longitude/latitude. When the file is
gone, each building's chip centre stands in for it (a point). Caches without a usable georeference (an
unknown CRS) fall back to plain coordinates: the chip centres in the cache's own units, with ``mode`` set to
``"plain"`` so the review page and the exports say so instead of pretending to be on Earth.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS
from shapely.geometry.base import BaseGeometry

from model.buildings import read_footprints
from model.chips import ChipStack
from model.errors import ModelError

__all__ = ["Locations", "locate_buildings"]

logger = logging.getLogger(__name__)

LONLAT = "EPSG:4326"


@dataclass(frozen=True)
class Locations:
    """Building id -> geometry, in one coordinate system.

    Attributes:
        mode: ``"lonlat"`` (EPSG:4326) or ``"plain"`` (the cache's own units, no georeference).
        shapes: building id -> footprint (or chip-centre point) in that system.
        points: building id -> (x, y) representative point (longitude, latitude in ``lonlat`` mode).
        source: where the geometry came from (``footprints <path>``, ``chip centres``), for the page.
        note: one sentence for researchers when the geometry is degraded, else empty.
    """

    mode: Literal["lonlat", "plain"]
    shapes: dict[str, BaseGeometry]
    points: dict[str, tuple[float, float]]
    source: str
    note: str = ""

    @property
    def crs(self) -> str | None:
        """The CRS of the shapes (None in plain mode)."""
        return LONLAT if self.mode == "lonlat" else None


def _footprint_file(stack: ChipStack) -> Path | None:
    """The footprint file the cache names, resolved against the cwd, the cache and the cache's ancestors."""
    entry: Any = stack.manifest.get("footprints") or {}
    raw = entry.get("path") if isinstance(entry, dict) else None
    if not raw:
        return None
    path = Path(str(raw))
    if path.is_absolute():
        return path if path.is_file() else None
    for base in (Path.cwd(), stack.path, *stack.path.resolve().parents):
        if (base / path).is_file():
            return base / path
    return None


def _chip_centres(stack: ChipStack) -> np.ndarray | None:
    """Centre of every chip in the working CRS, or None when the manifest has no chip origins."""
    origins = stack.manifest.get("chip_origin")
    if not origins or len(origins) != len(stack):
        return None
    half = stack.chip_size * stack.resolution / 2
    xy = np.asarray(origins, dtype=float)
    return np.column_stack([xy[:, 0] + half, xy[:, 1] - half])


def _grid(n: int) -> np.ndarray:
    """Plain positions for chips with no location at all: a square grid, one unit apart."""
    side = max(1, int(np.ceil(np.sqrt(n))))
    i = np.arange(n)
    return np.column_stack([i % side, -(i // side)]).astype(float)


def _plain(stack: ChipStack, centres: np.ndarray | None, why: str) -> Locations:
    xy = centres if centres is not None else _grid(len(stack))
    points = {b: (float(x), float(y)) for b, (x, y) in zip(stack.building_ids, xy, strict=True)}
    where = "their chip centres" if centres is not None else "a grid in cache order"
    return Locations(
        "plain",
        {b: shapely.Point(p) for b, p in points.items()},
        points,
        "chip centres" if centres is not None else "cache order",
        f"{why}; buildings are drawn at {where} in plain coordinates, not on a map of the Earth",
    )


def _georeferenced(crs: str) -> bool:
    try:
        parsed = CRS.from_user_input(crs)
    except Exception:  # pyproj raises CRSError, a plain Exception subclass
        return False
    return bool(parsed.is_projected or parsed.is_geographic)


def locate_buildings(stack: ChipStack) -> Locations:
    """Geometry of every building of a chip cache (see the module docstring for the fallbacks)."""
    ids = list(stack.building_ids)
    centres = _chip_centres(stack)
    if not _georeferenced(stack.crs):
        return _plain(stack, centres, f"the chip cache has no usable georeference (CRS {stack.crs!r})")
    shapes: dict[str, BaseGeometry] = {}
    path = _footprint_file(stack)
    params = stack.manifest.get("params") or {}
    if path is not None:
        try:
            buildings, _ = read_footprints(
                path,
                stack.crs,
                float(params.get("point_size_m", 10.0)),
                id_column=params.get("id_column"),
            )
            wanted = set(ids)
            chosen = [b for b in buildings if b.id in wanted]
            frame = gpd.GeoSeries([b.footprint for b in chosen], crs=stack.crs).to_crs(LONLAT)
            shapes = {b.id: g for b, g in zip(chosen, frame, strict=True)}
        except (ModelError, OSError, ValueError) as exc:
            logger.warning("footprints %s unreadable (%s); using chip centres", path, type(exc).__name__)
            shapes = {}
    if not shapes and centres is None:
        return _plain(stack, None, "the chip cache has neither its footprint file nor chip origins")
    source, note = f"footprints {path}", ""
    missing = [b for b in ids if b not in shapes]
    if missing and centres is not None:
        row = {b: i for i, b in enumerate(ids)}
        xy = centres[[row[b] for b in missing]]
        points_utm = gpd.GeoSeries(gpd.points_from_xy(xy[:, 0], xy[:, 1]), crs=stack.crs).to_crs(LONLAT)
        shapes.update(zip(missing, points_utm, strict=True))
        source = "chip centres" if len(missing) == len(ids) else f"footprints {path} and chip centres"
    if missing:
        note = (
            f"{len(missing)} of {len(ids)} buildings have no footprint (the cache's footprint file "
            f"{'is missing' if path is None else 'lacks them'}); "
            + (
                "they are drawn as points at their chip centres"
                if centres is not None
                else "they are not drawn"
            )
        )
    points = {}
    for b, g in shapes.items():
        p = g if g.geom_type == "Point" else g.representative_point()
        points[b] = (round(float(p.x), 7), round(float(p.y), 7))
    return Locations("lonlat", shapes, points, source, note)
