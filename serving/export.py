"""Exports of the dated buildings for GIS: GeoJSON, GeoPackage or CSV (WKT), with their evidence links.

One row per dated building: the properties of ``GET /api/buildings`` plus what a date traces back to: the
annotation ids and pseudonymous volunteers behind it, the model version, the building's evidence URL, its chip
URLs and the sha256 of every source image (from the chip cache manifest). Geometry is the footprint in
EPSG:4326 (a point where the footprint is unknown); a cache without georeference exports plain coordinates
without a CRS, and says so in the ``coordinates`` column.

Files are written to a temporary name in the target folder and renamed into place, so a killed export never
leaves a half-written file under the final name; the temporaries are named by their writer
(:func:`model.temporaries.writer_tag`), and the next export to the same name clears those of killed exports. A
folder that cannot be written gives an :class:`ExportError` naming it.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal
from urllib.parse import quote

import geopandas as gpd
import pandas as pd
import pyogrio

from active_learning.store import Store
from model.temporaries import WRITER_TAG, clear_dead_temporaries, writer_tag
from serving.catalog import DatedBuilding, Snapshot
from serving.errors import ExportError

__all__ = ["FORMATS", "LAYER", "ExportFormat", "export_frame", "write_export"]

ExportFormat = Literal["geojson", "gpkg", "csv"]
FORMATS: tuple[str, ...] = ("geojson", "gpkg", "csv")
LAYER = "dated_buildings"
_DRIVERS = {"geojson": "GeoJSON", "gpkg": "GPKG"}
MEDIA_TYPES = {"geojson": "application/geo+json", "gpkg": "application/geopackage+sqlite3", "csv": "text/csv"}


def export_frame(
    snapshot: Snapshot,
    store: Store,
    public_base_url: str,
    buildings: Sequence[DatedBuilding] | None = None,
    image_sha256: Sequence[str | None] = (),
) -> gpd.GeoDataFrame:
    """The dated buildings (all, or ``buildings``) with their evidence, one row each.

    Args:
        snapshot: the catalog snapshot.
        store: the store of record (annotation ids and volunteers).
        public_base_url: absolute base of the evidence and chip URLs.
        buildings: the rows to export (default: every dated building).
        image_sha256: sha256 of each date's source image (the chip cache's ``sources``).
    """
    chosen = list(snapshot.buildings.values()) if buildings is None else list(buildings)
    base = public_base_url.rstrip("/")
    evidence: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for building_id, external_id, volunteer_id, _, _ in store.annotation_log():
        evidence[building_id].append((external_id, volunteer_id))
    rows = []
    for b in chosen:
        props = b.properties()
        ids = evidence.get(b.building_id, [])
        quoted = quote(b.building_id, safe="")
        rows.append(
            {
                "building_id": b.building_id,
                "status": props["status"],
                "flags": ";".join(props["flags"]),
                "map_gap": props["map_gap"],
                "last_intact_date": props["last_intact_date"],
                "first_damaged_date": props["first_damaged_date"],
                "earliest_date": props["earliest_date"],
                "latest_date": props["latest_date"],
                "confidence": props["confidence"],
                "p_damaged": props["p_damaged"],
                "reviews": props["reviews"],
                "model_version": props["model_version"] or "",
                "posterior_version": props["posterior_version"],
                "decision": props["decision"] or "",
                "annotation_ids": ";".join(e for e, _ in ids),
                "volunteers": ";".join(dict.fromkeys(v for _, v in ids)),
                "dates": ";".join(d.isoformat() for d in b.dates),
                "image_sha256": ";".join(s or "" for s in image_sha256)
                if len(image_sha256) == len(b.dates)
                else "",
                "evidence_url": f"{base}/api/buildings/{quoted}",
                "chip_url_template": f"{base}/chips/{quoted}/{{date_index}}.png",
                "chip_cache_fingerprint": snapshot.chip_fingerprint or "",
                "coordinates": snapshot.coordinates,
            }
        )
    geometry = [snapshot.geometry(b.building_id, "footprint") for b in chosen]
    frame = gpd.GeoDataFrame(
        pd.DataFrame(rows), geometry=geometry, crs=snapshot.locations.crs if snapshot.locations else None
    )
    return frame


def _unwritable(folder: Path, exc: OSError) -> ExportError:
    return ExportError(
        f"{folder}: cannot write the export there ({exc.strerror or type(exc).__name__}); "
        "choose a writable folder (striketracker export --out PATH)"
    )


def write_export(frame: gpd.GeoDataFrame, out: Path, fmt: ExportFormat) -> Path:
    """Write ``frame`` to ``out`` atomically (temporary file in the same folder, then a rename).

    Raises:
        ExportError: the folder cannot be created or written, or the format is unknown.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; use one of {list(FORMATS)}")
    out = Path(out)
    folder = out.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(folder, exc) from None
    clear_dead_temporaries(folder, _temporaries_of(out))
    tmp = _temporary(out, out.suffix)
    try:
        # claim the temporary name first: an unwritable folder fails here, with a plain OSError
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        tmp.unlink()
    except OSError as exc:
        raise _unwritable(folder, exc) from None
    sidecars: list[tuple[Path, Path]] = []
    try:
        if fmt == "csv":
            table = pd.DataFrame(frame.drop(columns=frame.geometry.name))
            table.insert(1, "WKT", frame.geometry.to_wkt())
            points = frame.geometry.representative_point()
            table.insert(2, "x", points.x.round(7))
            table.insert(3, "y", points.y.round(7))
            table.to_csv(tmp, index=False)
            sidecars = _csv_sidecars(table, frame, out)
        else:
            pyogrio.write_dataframe(frame, tmp, driver=_DRIVERS[fmt], layer=LAYER if fmt == "gpkg" else None)
        for part, final in sidecars:
            os.replace(part, final)
        os.replace(tmp, out)
    except OSError as exc:
        raise _unwritable(folder, exc) from None
    except pyogrio.errors.DataSourceError as exc:
        raise ExportError(
            f"{out}: the {fmt} driver could not write it ({exc}); free disk space in {folder} or choose "
            "a writable folder (striketracker export --out PATH)"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
        for part, _ in sidecars:
            part.unlink(missing_ok=True)
    return out


def _temporary(out: Path, suffix: str) -> Path:
    """``.STEM.<writer tag>.part<suffix>`` beside ``out``: hidden, and never taken for an export."""
    return out.parent / f".{out.stem}.{writer_tag()}.part{suffix}"


def _temporaries_of(out: Path) -> str:
    """The names of every temporary of exports to ``out`` (any format, sidecars and GDAL journals included)."""
    return rf"\.{re.escape(out.stem)}\.{WRITER_TAG}\.part(\..*)?"


def _csv_sidecars(table: pd.DataFrame, frame: gpd.GeoDataFrame, out: Path) -> list[tuple[Path, Path]]:
    """GDAL's (and so QGIS's) CSV sidecars, written to temporary names: column types (.csvt) and CRS (.prj)."""
    kinds = {"WKT": "WKT", "x": "Real", "y": "Real", "confidence": "Real", "p_damaged": "Real",
             "map_gap": "Integer", "reviews": "Integer", "posterior_version": "Integer"}  # fmt: skip
    for column in ("last_intact_date", "first_damaged_date", "earliest_date", "latest_date"):
        kinds[column] = "Date"
    parts = []
    csvt = out.with_suffix(".csvt")
    part = _temporary(out, csvt.suffix)
    part.write_text(",".join(f'"{kinds.get(c, "String")}"' for c in table.columns) + "\n")
    parts.append((part, csvt))
    if frame.crs is not None:
        prj = out.with_suffix(".prj")
        part = _temporary(out, prj.suffix)
        part.write_text(frame.crs.to_wkt("WKT1_ESRI"))
        parts.append((part, prj))
    return parts
