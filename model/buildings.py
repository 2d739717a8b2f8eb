"""The Building contract: a stable id, a footprint in the working CRS, and free attributes.

Footprints are loaded with :func:`load_footprints` (or :func:`read_footprints`, which also returns the
rejected features) from GeoJSON, GeoPackage or Shapefile. Points become squares of ``point_size_m`` metres
centred on the point; everything is reprojected to the working CRS.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import shapely
from pyproj import CRS
from shapely.geometry.base import BaseGeometry

from model.errors import FootprintError, IngestWarning, InputProblem, summarize_problems

__all__ = ["ID_COLUMNS", "Building", "footprints_centroid_lonlat", "load_footprints", "read_footprints"]

ID_COLUMNS = ("id", "building_id", "bldg_id", "site_id", "objectid", "fid")
"""Columns tried, in order, for the building id when none is named; without any, ids are row numbers."""


@dataclass(frozen=True)
class Building:
    """One building to date.

    Attributes:
        id: stable string id, unique within a scenario or footprint file.
        footprint: polygon in the timeline's working CRS (a point input becomes a square, see ingestion).
        attributes: any other columns of the footprint file (UNOSAT grades, area, ...).
    """

    id: str
    footprint: BaseGeometry
    attributes: Mapping[str, Any] = field(default_factory=dict, compare=False)


def load_footprints(
    path: Path,
    crs: str,
    point_size_m: float = 10.0,
    *,
    id_column: str | None = None,
    layer: str | None = None,
) -> list[Building]:
    """Read building footprints in the working CRS, warning about each rejected feature.

    See :func:`read_footprints` for the arguments; rejects are emitted as grouped IngestWarnings.

    Returns:
        The usable buildings, in file order.

    Raises:
        FootprintError: the file is unreadable, empty, has no CRS, or no feature is usable.
    """
    buildings, problems = read_footprints(path, crs, point_size_m, id_column=id_column, layer=layer)
    for line in summarize_problems(problems, source=Path(path).name):
        warnings.warn(line, IngestWarning, stacklevel=2)
    return buildings


def read_footprints(
    path: Path,
    crs: str,
    point_size_m: float = 10.0,
    *,
    id_column: str | None = None,
    layer: str | None = None,
) -> tuple[list[Building], list[InputProblem]]:
    """Read building footprints from GeoJSON, GeoPackage or Shapefile into the working CRS.

    Polygons and multipolygons are kept as they are; points become axis-aligned squares of side
    ``point_size_m`` (in the working CRS) centred on the point. Features with no id, an empty or
    non-areal geometry (lines), or an id already used by an earlier feature are rejected; the first feature with
    a given id wins.

    Args:
        path: the footprint file.
        crs: working CRS the footprints are reprojected to (metric).
        point_size_m: side of the square a point footprint becomes, in metres.
        id_column: column holding the building id; None tries :data:`ID_COLUMNS`, then row numbers.
        layer: layer to read from a multi-layer file (GeoPackage); None prefers ``buildings``, else the first.

    Returns:
        The usable buildings in file order, and one InputProblem per rejected feature.

    Raises:
        FootprintError: the file is unreadable, empty, has no CRS, or no feature is usable.
    """
    path = Path(path)
    frame = _read_frame(path, layer)
    if len(frame) == 0:
        raise FootprintError(
            f"{path}: the footprint file holds no features; export the buildings to it or point to the right file"
        )
    if frame.crs is None:
        raise FootprintError(
            f"{path}: the footprints have no CRS; save the file with its CRS (a .prj beside a Shapefile)"
        )
    ids = _ids(frame, path, id_column)
    attribute_columns = [c for c in frame.columns if c != frame.geometry.name]
    working = CRS.from_user_input(crs)
    problems: list[InputProblem] = []
    geoms = (
        frame.geometry.to_crs(working)
        if not CRS.from_user_input(frame.crs).equals(working)
        else frame.geometry
    )
    geoms = _squares_for_points(geoms, point_size_m)

    seen: set[str] = set()
    buildings: list[Building] = []
    records = frame[attribute_columns].to_dict("records")
    for row, (bid, geom, record) in enumerate(zip(ids, geoms, records, strict=True), start=1):
        if bid is None:
            problems.append(
                InputProblem(
                    "missing_id", f"feature {row}", "the feature has no id", "give every building an id"
                )
            )
            continue
        if geom is None or geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
            kind = "empty" if geom is None or geom.is_empty else geom.geom_type
            problems.append(
                InputProblem("bad_geometry", bid, f"geometry is {kind}", "use polygon or point footprints")
            )
            continue
        if bid in seen:
            problems.append(
                InputProblem(
                    "duplicate_id",
                    bid,
                    f"id {bid!r} is used by more than one feature",
                    "give each building a unique id (the first feature with the id was kept)",
                )
            )
            continue
        seen.add(bid)
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
        buildings.append(Building(id=bid, footprint=geom, attributes=_clean(record)))

    if not buildings:
        raise FootprintError(f"{path}: no usable footprint remains", problems)
    return buildings, problems


def footprints_centroid_lonlat(path: Path, layer: str | None = None) -> tuple[float, float]:
    """Longitude and latitude of the centre of a footprint file's bounds (to choose a UTM zone).

    Raises:
        FootprintError: as :func:`read_footprints` for unreadable, empty or CRS-less files.
    """
    frame = _read_frame(Path(path), layer)
    if len(frame) == 0 or frame.crs is None:
        raise FootprintError(
            f"{path}: the footprint file is empty or has no CRS; export the buildings with their CRS"
        )
    west, south, east, north = frame.to_crs("EPSG:4326").total_bounds
    return float((west + east) / 2), float((south + north) / 2)


def _read_frame(path: Path, layer: str | None) -> gpd.GeoDataFrame:
    if not path.exists():
        raise FootprintError(f"{path}: the footprint file does not exist; check the path")
    try:
        if layer is None and path.suffix.lower() == ".gpkg":
            layers = [name for name, *_ in gpd.list_layers(path).itertuples(index=False)]
            layer = "buildings" if "buildings" in layers else (layers[0] if layers else None)
        return gpd.read_file(path, layer=layer) if layer else gpd.read_file(path)
    except Exception as exc:  # pyogrio raises several unrelated types for a bad file
        raise FootprintError(
            f"{path}: cannot read the footprints ({str(exc).strip().splitlines()[0] if str(exc) else exc!r}); "
            "use GeoJSON, GeoPackage or Shapefile"
        ) from exc


def _ids(frame: gpd.GeoDataFrame, path: Path, id_column: str | None) -> list[str | None]:
    if id_column is not None:
        if id_column not in frame.columns:
            raise FootprintError(
                f"{path}: no column {id_column!r} (columns: {list(frame.columns)}); name the id column"
            )
        column: str | None = id_column
    else:
        lowered = {c.lower(): c for c in frame.columns}
        column = next((lowered[c] for c in ID_COLUMNS if c in lowered), None)
    if column is None:
        return [str(i) for i in range(len(frame))]
    return [None if _missing(v) else _as_id(v) for v in frame[column]]


def _as_id(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip() or ""


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def _squares_for_points(geoms: gpd.GeoSeries, size: float) -> list[BaseGeometry | None]:
    out: list[BaseGeometry | None] = []
    half = size / 2.0
    for geom in geoms:
        if geom is not None and not geom.is_empty and geom.geom_type in ("Point", "MultiPoint"):
            c = geom.centroid
            out.append(shapely.box(c.x - half, c.y - half, c.x + half, c.y + half))
        else:
            out.append(geom)
    return out


def _clean(record: Mapping[str, Any]) -> dict[str, Any]:
    cleaned = {}
    for key, value in record.items():
        if isinstance(value, pd.Timestamp):
            value = value.isoformat()
        elif hasattr(value, "item") and callable(value.item):
            value = value.item()
        if isinstance(value, float) and math.isnan(value):
            value = None
        cleaned[str(key)] = value
    return cleaned
