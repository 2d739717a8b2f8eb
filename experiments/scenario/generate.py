"""Generate a scenario folder (docs/CONTRACTS.md, "Scenario folder"): imagery, cloud masks, footprints, truth.

The scene is rendered tile by tile; each tile is rendered for every date and written with windowed writes to
the date's tiled, compressed GeoTIFF, so no whole-scene array is ever held in memory. Large scenes render their
tiles in worker processes (every tile's randomness is keyed by its position, so the order does not matter) while
this process writes them. The same seed gives byte-identical truth tables and images, whatever the workers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import multiprocessing
import os
import resource
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from affine import Affine
from rasterio.enums import ColorInterp
from rasterio.windows import Window
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from experiments.scenario.acquisition import Acquisition, draw_acquisitions
from experiments.scenario.errors import ScenarioOutputError
from experiments.scenario.extract import DEFAULT_EXTRACT, read_extract
from experiments.scenario.layout import CRS, Layout, build_layout
from experiments.scenario.presets import Preset, check_seed, get_preset
from experiments.scenario.render import (
    BASE_RES,
    BuildingLooks,
    TileResult,
    build_looks,
    cloud_threshold,
    prepare_tile,
    render_tile,
)
from experiments.scenario.style import RAQQA, Style, draw_style
from experiments.scenario.timing import Truth, acquisition_dates, draw_truth

__all__ = ["GENERATOR_VERSION", "ScenarioSummary", "generate"]

GENERATOR_VERSION = "1.0.0"
BLOCK_M = 250.0
_GDAL_CACHE_MB = 192
HIDDEN = 0.5  # a building is not visible on a date when this share of its footprint is cloud or nodata
ATTRIBUTION = (
    "Building layout: UNITAR-UNOSAT, Comprehensive Damage Assessment of Ar-Raqqa, Syria "
    "(imagery 22 Oct 2013 to 21 Oct 2017), published on the Humanitarian Data Exchange (public; attribution "
    "to UNITAR-UNOSAT required).\nDamage-site points are real; footprints, intact buildings, dates within the "
    "UNOSAT windows and all imagery are synthetic, rendered by striketracker's scenario generator.\n"
)
_BAND_NAMES = ("red", "green", "blue", "nir")
POOL_MIN_TILES = 24
"""Below this many tiles (``tiny`` and ``district`` have 4 and 12) the tiles render in this process: starting
worker processes would cost more than it saves."""


@dataclass(frozen=True)
class ScenarioSummary:
    """What ``generate`` wrote.

    Attributes:
        out: the scenario folder.
        preset / seed: how it was made.
        dates: acquisition dates.
        counts: buildings by source and final grade.
        seconds: wall time of the generation.
        peak_rss_mb: peak resident memory of this process so far (shows that rendering streams tiles).
    """

    out: Path
    preset: str
    seed: int
    dates: tuple[dt.date, ...]
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    peak_rss_mb: float = 0.0

    @property
    def n_buildings(self) -> int:
        return self.counts.get("buildings", 0)


def _profile(layout: Layout, acq: Acquisition, bands: int) -> dict[str, object]:
    xmin, ymin, xmax, ymax = layout.bounds
    res = acq.resolution
    return {
        "driver": "GTiff",
        "width": int(round((xmax - xmin) / res)),
        "height": int(round((ymax - ymin) / res)),
        "count": bands,
        "dtype": "uint8",
        "crs": CRS,
        "transform": Affine(res, 0.0, xmin, 0.0, -res, ymax),
        "nodata": 0,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "predictor": 2,
        "zlevel": 3,
    }


def _tiles(
    layout: Layout, preset: Preset, looks_radius: np.ndarray
) -> list[tuple[float, float, float, float]]:
    """Tiles (col_m, row_m, width_m, height_m) holding at least one building (others stay nodata)."""
    xmin, ymin, xmax, ymax = layout.bounds
    tile_m = preset.tile * BASE_RES
    out = []
    reach = looks_radius + 60.0
    for row_m in np.arange(0, ymax - ymin, tile_m):
        for col_m in np.arange(0, xmax - xmin, tile_m):
            w, h = min(tile_m, xmax - xmin - col_m), min(tile_m, ymax - ymin - row_m)
            tx0, ty1 = xmin + col_m, ymax - row_m
            near = (
                (layout.x + reach > tx0)
                & (layout.x - reach < tx0 + w)
                & (layout.y + reach > ty1 - h)
                & (layout.y - reach < ty1)
            )
            if near.any():
                out.append((float(col_m), float(row_m), float(w), float(h)))
    return out


def _prepare(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        for sub in ("imagery", "clouds"):
            if (out / sub).exists():
                shutil.rmtree(out / sub)
            (out / sub).mkdir()
    except OSError as exc:
        raise ScenarioOutputError(
            f"{out}: cannot create the scenario folder ({exc}); choose a writable --out"
        ) from exc


def generate(
    preset: str,
    seed: int,
    out: Path,
    progress: bool = True,
    extract: Path = DEFAULT_EXTRACT,
    randomise: bool | None = None,
    workers: int | None = None,
) -> ScenarioSummary:
    """Generate the scenario ``preset`` with ``seed`` into the folder ``out``.

    Args:
        preset: ``tiny``, ``district`` or ``city``.
        seed: non-negative integer; the same seed gives byte-identical truth and images.
        out: output folder (created; its ``imagery/`` and ``clouds/`` are replaced).
        progress: show a rich progress bar.
        extract: the UNOSAT CSV extract.
        randomise: render in a randomised world style (None: as the preset says, see ``Preset.randomise``).
        workers: processes rendering tiles (None: one per CPU, at most 4, once the scene has
            :data:`POOL_MIN_TILES` tiles; 1: all in this process). The output does not depend on it.

    Raises:
        UnknownPresetError, BadSeedError, ScenarioDataError, ScenarioOutputError.
    """
    started = time.perf_counter()
    spec = get_preset(preset)
    seed = check_seed(seed)
    points = read_extract(extract)
    out = Path(out)
    _prepare(out)

    layout = build_layout(points, spec, np.random.default_rng([seed, 1]))
    dates = acquisition_dates(spec, np.random.default_rng([seed, 2]))
    truth = draw_truth(layout, dates, np.random.default_rng([seed, 3]))
    acquisitions = draw_acquisitions(spec, dates, seed, np.random.default_rng([seed, 4]))
    randomise = spec.randomise if randomise is None else randomise
    style = draw_style(np.random.default_rng([seed, 6])) if randomise else RAQQA
    looks = build_looks(layout, truth, np.random.default_rng([seed, 5]), style)
    n, t_count = len(layout), len(dates)
    tiles = _tiles(layout, spec, looks.radius)
    names = [f"{d.isoformat()}.tif" for d in dates]
    # bound GDAL's block cache: 30 datasets are open at once and dirty blocks are flushed as tiles complete
    with rasterio.Env(GDAL_CACHEMAX=_GDAL_CACHE_MB * 1024 * 1024):
        pixels, cloud_px, nodata_px = _render_all(
            out,
            _Scene(
                layout, truth, looks, acquisitions, seed, [cloud_threshold(layout, a) for a in acquisitions]
            ),
            tiles,
            names,
            _workers(workers, len(tiles)),
            progress,
            f"{spec.name} seed {seed}",
        )

    safe = np.maximum(pixels, 1)
    cloud_fraction = cloud_px / safe
    hidden = (cloud_px + nodata_px) / safe
    visible = (hidden < HIDDEN) & (pixels > 0)
    _write_footprints(out, layout)
    truth_table = _truth_table(layout, truth, dates, hidden)
    truth_table.to_csv(out / "truth.csv", index=False)
    _truth_dates(layout, truth, t_count, cloud_fraction, visible).to_csv(out / "truth_dates.csv", index=False)
    pd.DataFrame(
        {
            "date": [d.isoformat() for d in dates],
            "path": [f"imagery/{name}" for name in names],
            "sensor": [a.sensor for a in acquisitions],
            "cloud_mask": [f"clouds/{name}" for name in names],
        }
    ).to_csv(out / "manifest.csv", index=False)
    (out / "ATTRIBUTION.txt").write_text(ATTRIBUTION)
    counts = {
        "buildings": n,
        "unosat": int((layout.source == "unosat").sum()),
        "intact_added": int((layout.source == "intact").sum()),
        "final_intact": int((truth.final_grade == "intact").sum()),
        "final_damaged": int((truth.final_grade == "damaged").sum()),
        "final_destroyed": int((truth.final_grade == "destroyed").sum()),
        "gap_0": int((truth.gap == 0).sum()),
        "gap_in_window": int(((truth.gap > 0) & (truth.gap < t_count)).sum()),
        "partial": int(truth.partial.sum()),
        "cleared": int((truth.cleared_gap < t_count).sum()),
        "rebuilt": int((truth.rebuilt_gap < t_count).sum()),
        "dates": t_count,
        "tiles": len(tiles),
    }
    seconds = time.perf_counter() - started
    scenario = {
        "preset": spec.name,
        "seed": seed,
        "crs": CRS,
        "resolution": spec.resolution,
        "dates": [d.isoformat() for d in dates],
        "bounds": list(layout.bounds),
        "counts": counts,
        "generator": "experiments.scenario",
        "generator_version": GENERATOR_VERSION,
        "block_m": BLOCK_M,
        **({"style": _style_record(style)} if style.randomised else {}),
        "acquisitions": [
            {
                "date": a.date.isoformat(),
                "sensor": a.sensor,
                "bands": a.bands,
                "resolution": a.resolution,
                "sun_elevation": round(a.sun_elevation, 2),
                "sun_azimuth": round(a.sun_azimuth, 2),
                "view_angle": round(a.view_angle, 2),
                "view_azimuth": round(a.view_azimuth, 2),
                "misregistration_px": list(a.shift_px),
                "haze": round(a.haze, 3),
                "cloud_cover_target": round(a.cloud_cover, 3),
                "swath_edge": a.swath is not None,
            }
            for a in acquisitions
        ],
        "source": "UNITAR-UNOSAT Raqqa damage points (see ATTRIBUTION.txt)",
    }
    (out / "scenario.json").write_text(json.dumps(scenario, indent=2) + "\n")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return ScenarioSummary(
        out=out,
        preset=spec.name,
        seed=seed,
        dates=tuple(dates),
        counts=counts,
        seconds=seconds,
        peak_rss_mb=peak,
    )


@dataclass(frozen=True)
class _Scene:
    """What rendering a tile needs, shipped once to every worker process."""

    layout: Layout
    truth: Truth
    looks: BuildingLooks
    acquisitions: list[Acquisition]
    seed: int
    thresholds: list[float]


_WORKER_SCENE: _Scene | None = None  # set in each worker process by _init_worker


def _init_worker(scene: _Scene) -> None:
    global _WORKER_SCENE
    _WORKER_SCENE = scene


def _render_in_worker(tile: tuple[float, float, float, float]) -> list[TileResult]:
    assert _WORKER_SCENE is not None, "worker started without _init_worker"
    return _render_tile_dates(_WORKER_SCENE, tile)


def _render_tile_dates(scene: _Scene, tile: tuple[float, float, float, float]) -> list[TileResult]:
    """One tile on every date."""
    col_m, row_m, w_m, h_m = tile
    ground = prepare_tile(scene.layout, scene.looks, col_m, row_m, w_m, h_m, scene.seed)
    return [
        render_tile(scene.layout, scene.truth, scene.looks, ground, acq, t, scene.thresholds[t])
        for t, acq in enumerate(scene.acquisitions)
    ]


def _workers(requested: int | None, n_tiles: int) -> int:
    if requested is not None:
        if requested < 1:
            raise ValueError(f"workers must be at least 1, got {requested}")
        return requested
    return 1 if n_tiles < POOL_MIN_TILES else max(1, min(4, os.cpu_count() or 1))


def _rendered(
    scene: _Scene, tiles: list[tuple[float, float, float, float]], workers: int
) -> Iterator[list[TileResult]]:
    """Every tile's dates, in tile order: in this process, or from ``workers`` processes with a bounded number of
    tiles in flight (each is ~1.8 MB per date), so memory stays flat however large the scene."""
    if workers == 1:
        for tile in tiles:
            yield _render_tile_dates(scene, tile)
        return
    # spawn, not fork: the caller may hold threads (torch, GDAL) that a forked child would inherit half-locked
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(scene,)
    ) as pool:
        pending: list[Future[list[TileResult]]] = []
        queue = iter(tiles)
        for tile in queue:
            pending.append(pool.submit(_render_in_worker, tile))
            if len(pending) >= 2 * workers:
                break
        while pending:
            done = pending.pop(0).result()
            nxt = next(queue, None)
            if nxt is not None:
                pending.append(pool.submit(_render_in_worker, nxt))
            yield done


def _render_all(
    out: Path,
    scene: _Scene,
    tiles: list[tuple[float, float, float, float]],
    names: list[str],
    workers: int,
    progress: bool,
    label: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render every tile on every date into the open GeoTIFFs; footprint pixel counts ``[N, T]`` (all, cloud,
    nodata)."""
    layout, acquisitions = scene.layout, scene.acquisitions
    n, t_count = len(layout), len(acquisitions)
    pixels = np.zeros((n, t_count), np.int64)
    cloud_px = np.zeros((n, t_count), np.int64)
    nodata_px = np.zeros((n, t_count), np.int64)
    images = [
        rasterio.open(out / "imagery" / name, "w", **_profile(layout, a, a.bands))  # type: ignore[arg-type]
        for name, a in zip(names, acquisitions, strict=True)
    ]
    clouds = [
        rasterio.open(out / "clouds" / name, "w", **_profile(layout, a, 1))  # type: ignore[arg-type]
        for name, a in zip(names, acquisitions, strict=True)
    ]
    try:
        for ds, acq in zip(images, acquisitions, strict=True):
            ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.undefined][
                : acq.bands
            ]
            for b in range(acq.bands):
                ds.set_band_description(b + 1, _BAND_NAMES[b])
            ds.update_tags(
                date=acq.date.isoformat(), sensor=acq.sensor, generator=f"striketracker {GENERATOR_VERSION}"
            )
        columns = [
            TextColumn("[bold]scenario[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, disable=not progress) as bar:
            description = f"{label}: {n} buildings, {t_count} dates, {workers} worker(s)"
            task = bar.add_task(description, total=len(tiles) * t_count)
            for (col_m, row_m, _, _), dated in zip(tiles, _rendered(scene, tiles, workers), strict=True):
                for t, (tile, acq) in enumerate(zip(dated, acquisitions, strict=True)):
                    res = acq.resolution
                    window = Window(
                        int(round(col_m / res)),
                        int(round(row_m / res)),
                        tile.image.shape[2],
                        tile.image.shape[1],
                    )
                    images[t].write(tile.image, window=window)
                    clouds[t].write(tile.cloud[None], window=window)
                    np.add.at(pixels[:, t], tile.building_index, tile.pixels)
                    np.add.at(cloud_px[:, t], tile.building_index, tile.cloud_pixels)
                    np.add.at(nodata_px[:, t], tile.building_index, tile.nodata_pixels)
                    bar.advance(task)
    finally:
        for ds in (*images, *clouds):
            ds.close()

    return pixels, cloud_px, nodata_px


def _write_footprints(out: Path, layout: Layout) -> None:
    corners = layout.corners()
    frame = gpd.GeoDataFrame(
        {"id": layout.ids.astype(str), "area_m2": np.round(layout.area_m2, 2)},
        geometry=shapely.polygons(corners),
        crs=CRS,
    )
    path = out / "footprints.gpkg"
    if path.exists():
        path.unlink()
    frame.to_file(path, layer="buildings", driver="GPKG")


def _truth_table(layout: Layout, truth: Truth, dates: list[dt.date], hidden: np.ndarray) -> pd.DataFrame:
    t_count = len(dates)
    iso = [d.isoformat() for d in dates]
    gap = truth.gap
    # cloud (or nodata) over the building on the two dates bounding the change
    before = hidden[np.arange(len(gap)), np.clip(gap - 1, 0, t_count - 1)]
    after = hidden[np.arange(len(gap)), np.clip(gap, 0, t_count - 1)]
    in_window = (gap > 0) & (gap < t_count)
    cloud_at_change = np.where(in_window, np.maximum(before, after), 0.0)
    area = layout.area_m2
    size_factor = np.clip((150.0 - area) / 120.0, 0, 1)
    difficulty = np.clip(
        0.35 * size_factor
        + 0.45 * cloud_at_change
        + 0.3 * truth.partial
        + 0.1 * (truth.rebuilt_gap < t_count),
        0,
        1,
    )
    return pd.DataFrame(
        {
            "building_id": layout.ids.astype(str),
            "true_gap": gap,
            "last_intact_date": [iso[g - 1] if g >= 1 else "" for g in gap],
            "first_damaged_date": [iso[g] if g < t_count else "" for g in gap],
            "destroyed_gap": truth.destroyed_gap,
            "final_grade": truth.final_grade.astype(str),
            "partial": truth.partial.astype(bool),
            "cleared": truth.cleared_gap < t_count,
            "rebuilt": truth.rebuilt_gap < t_count,
            "area_m2": np.round(area, 2),
            "cloud_at_change": np.round(cloud_at_change, 4),
            "difficulty": np.round(difficulty, 4),
            "block_id": [
                f"{int(x // BLOCK_M)}_{int(y // BLOCK_M)}" for x, y in zip(layout.x, layout.y, strict=True)
            ],
            "source": layout.source.astype(str),
        }
    )


def _truth_dates(
    layout: Layout, truth: Truth, t_count: int, cloud_fraction: np.ndarray, visible: np.ndarray
) -> pd.DataFrame:
    n = len(layout)
    names = np.array(["intact", "damaged", "destroyed"])
    return pd.DataFrame(
        {
            "building_id": np.repeat(layout.ids.astype(str), t_count),
            "date_index": np.tile(np.arange(t_count), n),
            "state": names[truth.states(t_count)].ravel(),
            "cloud_fraction": np.round(cloud_fraction, 4).ravel(),
            "visible": visible.ravel(),
        }
    )


def _style_record(style: Style) -> dict[str, object]:
    """The drawn world style, for scenario.json (numbers rounded, arrays as lists)."""
    return {
        k: np.round(np.asarray(v, dtype=float), 3).tolist() if not isinstance(v, float) else round(v, 3)
        for k, v in dataclasses.asdict(style).items()
    }
