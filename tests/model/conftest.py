"""Fixtures writing tiny georeferenced GeoTIFFs and footprint files with rasterio and geopandas.

The imagery is a smooth function of world coordinates (UTM 37N metres), so the same scene written on another
grid (other CRS, resolution or band count) must give nearly the same chips after ingestion.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.warp import transform as warp_transform

UTM = "EPSG:32637"
X0, Y0 = 500_000.0, 3_978_100.0  # top-left of the scene, near Raqqa
SIZE_M = 100.0  # the scene is 100 m x 100 m
DATES = (dt.date(2017, 2, 3), dt.date(2017, 6, 14), dt.date(2017, 10, 21))


def scene_value(x: np.ndarray, y: np.ndarray, band: int, date_index: int) -> np.ndarray:
    """Smooth test pattern in 10..250: differs per band and date, varies over tens of metres."""
    u, v = (x - X0) / SIZE_M, (Y0 - y) / SIZE_M
    wave = np.sin(2 * np.pi * (u * (1 + band) + 0.3 * date_index)) * np.cos(2 * np.pi * v * (1 + 0.5 * band))
    return 130 + 100 * wave + 10 * u


def write_geotiff(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = UTM,
    transform: Affine | None = None,
    nodata: float | None = 0,
    tags: dict[str, str] | None = None,
) -> Path:
    """Write ``data [bands, h, w]`` as a GeoTIFF (no CRS when ``crs`` is None)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "transform": transform or Affine(0.5, 0, X0, 0, -0.5, Y0),
        "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if tags:
            dst.update_tags(**tags)
    return path


def render(
    date_index: int,
    *,
    resolution: float = 0.5,
    bands: int = 4,
    crs: str = UTM,
    dtype: str = "uint8",
) -> tuple[np.ndarray, Affine]:
    """The test scene for one date on a grid of the given CRS and resolution covering the 100 m square."""
    if crs == UTM:
        left, top = X0, Y0
        step_x, step_y = resolution, resolution
        n = round(SIZE_M / resolution)
        nx = ny = n
    else:  # geographic: same ground area, pixels in degrees
        (lon0, lon1), (lat1, lat0) = warp_transform(UTM, crs, [X0, X0 + SIZE_M], [Y0, Y0 - SIZE_M])
        nx = ny = round(SIZE_M / resolution)
        left, top = lon0, lat1
        step_x, step_y = (lon1 - lon0) / nx, (lat1 - lat0) / ny
    cols, rows = np.meshgrid(np.arange(nx) + 0.5, np.arange(ny) + 0.5)
    xs, ys = left + cols * step_x, top - rows * step_y
    if crs != UTM:
        xs, ys = (np.array(a).reshape(xs.shape) for a in warp_transform(crs, UTM, xs.ravel(), ys.ravel()))
    data = np.stack([scene_value(xs, ys, b, date_index) for b in range(bands)])
    if dtype == "uint16":
        data = data * 40 + 1000
    return data.round().astype(dtype), Affine(step_x, 0, left, 0, -step_y, top)


@dataclass(frozen=True)
class Scene:
    """A tiny imagery folder plus footprints."""

    imagery: Path
    footprints: Path
    ids: tuple[str, ...]


def square(cx: float, cy: float, half: float) -> shapely.Polygon:
    return shapely.box(cx - half, cy - half, cx + half, cy + half)


def write_footprints(path: Path, ids: Sequence[str], geoms: Sequence[object], crs: str = UTM) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = gpd.GeoDataFrame({"id": list(ids), "grade": ["x"] * len(ids)}, geometry=list(geoms), crs=crs)
    driver = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".shp": "ESRI Shapefile"}[path.suffix]
    frame.to_file(path, driver=driver, **({"layer": "buildings"} if driver == "GPKG" else {}))
    return path


# Buildings: centres in metres from the scene's top-left corner (x right, y down).
BUILDING_OFFSETS = {"B1": (20.0, 20.0), "B2": (50.0, 50.0), "B3": (80.0, 30.0), "B4": (99.0, 70.0)}


def write_scene(root: Path, **render_options: object) -> Scene:
    """Write the 3-date scene (``render`` options apply to every date) and the four-building footprints."""
    for t, date in enumerate(DATES):
        data, transform = render(t, **render_options)  # type: ignore[arg-type]
        crs = str(render_options.get("crs", UTM))
        write_geotiff(root / "imagery" / f"{date.isoformat()}.tif", data, crs=crs, transform=transform)
    ids = tuple(BUILDING_OFFSETS)
    geoms = [square(X0 + dx, Y0 - dy, 4.0) for dx, dy in BUILDING_OFFSETS.values()]
    footprints = write_footprints(root / "footprints.gpkg", ids, geoms)
    return Scene(imagery=root / "imagery", footprints=footprints, ids=ids)


@pytest.fixture
def make_scene(tmp_path: Path) -> Callable[..., Scene]:
    """Factory: ``make_scene(name, **render_options)`` writes a scene under ``tmp_path / name``."""

    def make(name: str = "scene", **render_options: object) -> Scene:
        return write_scene(tmp_path / name, **render_options)

    return make


@pytest.fixture
def scene(make_scene: Callable[..., Scene]) -> Scene:
    """The default scene: 3 dates, 4-band uint8 on the working grid, 4 buildings (B4 on the east edge)."""
    return make_scene()
