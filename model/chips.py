"""Chip stacks: every building's image chips on one working grid, cut once and cached memory-mapped.

:func:`ingest` turns a timeline of GeoTIFFs (any CRS, resolution, band count, uint8/uint16/float) and a
footprint file into a chip cache (format in docs/CONTRACTS.md, "Chip cache"):

1. Working grid: a metric CRS (the UTM zone of the footprints' centre unless given) at ``resolution`` metres,
   with pixel edges on multiples of the resolution, so every chip is an exact window of it.
2. Each building gets a ``chip_size``-pixel square centred on its footprint centroid, and a footprint mask.
3. Buildings are grouped into spatial tiles of ``tile_size`` pixels (at most ``max_batch`` buildings per read).
   For each tile and date one window is read from the date's image aligned to the grid (a direct windowed read
   when the image already lies on the grid, else a ``rasterio.vrt.WarpedVRT``), all the tile's chips are cut
   from it and written to the cache files. Memory stays bounded by one window per read, whatever the city size.
4. Bands become R, G, B, NIR: 4+ bands take the first four, 3 bands get NIR = 0, 1 band (panchromatic) is
   copied to R, G, B. uint8 is kept; other types get a per-image, per-band linear stretch from the
   ``percentiles`` (default 2nd and 98th, over valid pixels of a decimated read of the whole image) to 0..255.
5. Validity per chip: the fraction of its pixels that lie inside the image, are not nodata (all bands equal to
   the nodata value, or masked by an alpha band / internal mask) and are not cloud (cloud mask >= 128).

torchgeo's ``RasterDataset`` is not used here: it answers "pixels of this bounding box" by merging every file
that intersects it (a WarpedVRT per file per query), which is the per-building read this module replaces with
one read per tile; chips centred per building on a fixed grid need none of its index or samplers. The chip
cache is what the network's datasets read.

The cache is identified by a fingerprint (sha256 over the inputs' checksums and the parameters); a re-run with
the same fingerprint reuses it without work. A new cache is written to a temporary sibling folder and renamed
into place, so a half-written cache is never taken for a valid one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import hashlib
import json
import math
import os
import re
import shutil
import socket
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from affine import Affine
from numpy.lib.stride_tricks import sliding_window_view
from pyproj import CRS
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.features import rasterize
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from model.buildings import Building, footprints_centroid_lonlat, read_footprints
from model.errors import (
    CacheError,
    FootprintError,
    ImageryError,
    IngestWarning,
    InputProblem,
    exception_reason,
    summarize_problems,
)
from model.timeline import Acquisition, Timeline, load_timeline, utm_crs_for

__all__ = ["BANDS", "FORMAT_VERSION", "ChipStack", "IngestParams", "ingest"]

FORMAT_VERSION = 1
BANDS = ("red", "green", "blue", "nir")
MANIFEST = "manifest.json"
CHIPS = "chips.u8"
MASK = "mask.u8"
VALID = "valid.npy"
_GDAL_CACHE_MB = 64

ProgressFn = Callable[[int, int], None]
"""Called as ``progress(buildings_done, buildings_total)`` while chips are cut."""


@dataclass(frozen=True)
class IngestParams:
    """How to cut chips. Fields marked *layout* change the cache's content and enter its fingerprint.

    Attributes:
        chip_size: chip side in pixels (layout).
        resolution: working pixel size in metres (layout).
        crs: working CRS; None picks the UTM zone of the footprints' centre (layout).
        point_size_m: side of the square a point footprint becomes (layout).
        id_column: footprint column with the building ids; None guesses (layout).
        percentiles: low and high percentile of the stretch applied to non-uint8 images (layout).
        resampling: resampling used when an image must be warped onto the grid (layout).
        tile_size: side in pixels of the spatial tiles read at once (speed only).
        max_batch: most buildings cut from one window read; 1 gives per-building reads (speed only).
        workers: threads reading the dates of a tile in parallel (GDAL releases the GIL) (speed only).
    """

    chip_size: int = 64
    resolution: float = 0.5
    crs: str | None = None
    point_size_m: float = 10.0
    id_column: str | None = None
    percentiles: tuple[float, float] = (2.0, 98.0)
    resampling: str = "bilinear"
    tile_size: int = 1024
    max_batch: int = 256
    workers: int = 2

    def layout(self) -> dict[str, Any]:
        """The parameters that change the cache's content."""
        values = dataclasses.asdict(self)
        for speed_only in ("tile_size", "max_batch", "workers"):
            values.pop(speed_only)
        values["percentiles"] = list(self.percentiles)
        return values


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
        manifest = _read_manifest(cache)
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


# --- ingestion -------------------------------------------------------------------------------------------------


def ingest(
    imagery: Path,
    footprints: Path,
    out: Path,
    params: IngestParams | None = None,
    *,
    progress: ProgressFn | None = None,
    force: bool = False,
    warn: bool = True,
) -> ChipStack:
    """Cut and cache a chip stack for every building, or reuse the cache when its inputs are unchanged.

    Args:
        imagery: a folder of GeoTIFFs, a scenario folder, or a manifest CSV (see ``load_timeline``).
        footprints: GeoJSON, GeoPackage or Shapefile of building polygons or points.
        out: the cache folder (created; replaced atomically when the inputs changed).
        params: chip layout and read strategy.
        progress: called with (buildings done, buildings total) while cutting.
        force: rebuild even when the cache matches.
        warn: emit an IngestWarning per group of rejected inputs.

    Returns:
        The opened cache. ``manifest["rejects"]`` lists every rejected image and building.

    Raises:
        ImageryError: no usable image.
        FootprintError: no usable footprint, or none inside any image.
        CacheError: ``out`` exists and is not a chip cache.
    """
    params = params or IngestParams()
    imagery, footprints, out = Path(imagery), Path(footprints), Path(out)
    started = time.perf_counter()
    _clear_dead_builds(out)
    previous = _read_manifest(out)
    if previous is None and out.exists() and any(out.iterdir()):
        raise CacheError(f"{out}: exists and is not a chip cache; choose an empty or new folder for --out")

    crs = params.crs or utm_crs_for(*footprints_centroid_lonlat(footprints))
    _check_metric(crs)
    timeline = load_timeline(imagery, crs=crs, resolution=params.resolution, warn=False)
    buildings, building_problems = read_footprints(
        footprints, crs, params.point_size_m, id_column=params.id_column
    )
    memo = _checksum_memo(previous)
    sources = [_describe_source(acq, memo) for acq in timeline.acquisitions]
    footprint_files = [
        {"path": str(p), "sha256": _sha256(p, memo), **_stat(p)} for p in _sidecars(footprints)
    ]
    fingerprint = _fingerprint(params, crs, sources, footprint_files, timeline.problems, memo)

    if not force and previous is not None and previous.get("fingerprint") == fingerprint:
        try:
            stack = ChipStack.open(out)
        except CacheError:
            pass  # damaged cache with the right fingerprint: rebuild it
        else:
            if warn:  # the same rejects as when it was built
                stored = [InputProblem(**r) for r in stack.manifest.get("rejects", [])]
                for line in summarize_problems(stored, source=footprints.name):
                    warnings.warn(line, IngestWarning, stacklevel=2)
            return stack

    boxes = [_bounds_box(acq.path, crs) for acq in timeline.acquisitions]
    buildings, outside = _inside_any(buildings, boxes)
    building_problems += outside
    problems = list(timeline.problems) + building_problems
    if warn:
        for line in summarize_problems(problems, source=footprints.name):
            warnings.warn(line, IngestWarning, stacklevel=2)
    if not buildings:
        raise FootprintError(f"{footprints}: no building lies inside any image", problems)

    tmp = out.parent / f".{out.name}.tmp-{_build_tag()}"
    try:
        tmp.mkdir(parents=True)
        manifest, read_problems = _build(timeline, buildings, params, crs, sources, tmp, progress)
        if warn:
            for problem in read_problems:
                warnings.warn(problem.message(), IngestWarning, stacklevel=2)
        manifest.update(
            fingerprint=fingerprint,
            footprints={"path": str(footprints), "files": footprint_files},
            params=dataclasses.asdict(params),
            rejects=[p.to_dict() for p in [*problems, *read_problems]],
            seconds=round(time.perf_counter() - started, 3),
        )
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        _swap_into_place(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
            raise CacheError(
                f"{out}: cannot write the chip cache ({exc.strerror}: {exc.filename or tmp}); nothing was "
                "changed. Free disk space, or choose a writable folder for --out"
            ) from exc
        raise
    return ChipStack.open(out)


@dataclass
class _Layout:
    """Where each building's chip lies on the global working grid (pixel indices, rows grow southwards)."""

    col: np.ndarray
    row: np.ndarray
    size: int
    resolution: float

    @property
    def grid_transform(self) -> Affine:
        res = self.resolution
        return Affine(res, 0.0, float(self.col.min()) * res, 0.0, -res, -float(self.row.min()) * res)

    @property
    def grid_shape(self) -> tuple[int, int]:
        return (
            int(self.row.max() - self.row.min()) + self.size,
            int(self.col.max() - self.col.min()) + self.size,
        )


def _build(
    timeline: Timeline,
    buildings: Sequence[Building],
    params: IngestParams,
    crs: str,
    sources: list[dict[str, Any]],
    folder: Path,
    progress: ProgressFn | None,
) -> tuple[dict[str, Any], list[InputProblem]]:
    """Cut every chip into ``folder``; return the manifest (without inputs) and the images that failed."""
    n, t, s, c = len(buildings), timeline.n_dates, params.chip_size, len(BANDS)
    res = params.resolution
    centroids = shapely.centroid(np.array([b.footprint for b in buildings], dtype=object))
    cx, cy = shapely.get_x(centroids), shapely.get_y(centroids)
    layout = _Layout(
        col=np.round(cx / res).astype(np.int64) - s // 2,
        row=np.round(-cy / res).astype(np.int64) - s // 2,
        size=s,
        resolution=res,
    )
    chip_bytes = t * c * s * s
    valid = np.zeros((n, t), dtype=np.float32)
    read_problems: list[InputProblem] = []
    with (
        rasterio.Env(GDAL_CACHEMAX=_GDAL_CACHE_MB * 1024 * 1024),
        (folder / CHIPS).open("wb") as chips_file,
        (folder / MASK).open("wb") as mask_file,
        ThreadPoolExecutor(max_workers=max(1, params.workers)) as pool,
    ):
        chips_file.truncate(n * chip_bytes)
        mask_file.truncate(n * s * s)
        readers = [
            _GridReader(acq, crs, layout, params, src_info)
            for acq, src_info in zip(timeline.acquisitions, sources, strict=True)
        ]
        try:
            done = 0
            for batch in _batches(layout, params.tile_size, params.max_batch):
                stack = _cut_batch(batch, layout, readers, valid, pool)
                for j, i in enumerate(batch):
                    os.pwrite(chips_file.fileno(), stack[j].tobytes(), int(i) * chip_bytes)
                    mask = _footprint_mask(buildings[i].footprint, layout, int(i))
                    os.pwrite(mask_file.fileno(), mask.tobytes(), int(i) * s * s)
                done += len(batch)
                if progress is not None:
                    progress(done, n)
        finally:
            for reader in readers:
                read_problems += reader.problems
                reader.close()
    np.save(folder / VALID, valid)

    blind = [b.id for b, v in zip(buildings, valid, strict=True) if not v.any()]
    return {
        "format": "striketracker-chips",
        "version": FORMAT_VERSION,
        "complete": True,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "building_ids": [b.id for b in buildings],
        "dates": [d.isoformat() for d in timeline.dates],
        "sensors": [a.sensor for a in timeline.acquisitions],
        "crs": crs,
        "resolution": res,
        "chip_size": s,
        "bands": list(BANDS),
        "shape": {"chips": [n, t, c, s, s], "mask": [n, s, s], "valid": [n, t]},
        "chip_origin": [
            [float(col) * res, -float(row) * res] for col, row in zip(layout.col, layout.row, strict=True)
        ],
        "sources": sources,
        "warnings": [
            {
                "kind": "never_visible",
                "subject": ", ".join(blind[:50]) + (" ..." if len(blind) > 50 else ""),
                "reason": f"{len(blind)} building(s) have no valid pixel in any date (nodata or cloud everywhere)",
                "fix": "check the imagery's nodata areas and cloud masks around these buildings",
            }
        ]
        if blind
        else [],
    }, read_problems


def _batches(layout: _Layout, tile_size: int, max_batch: int) -> Iterator[np.ndarray]:
    """Building indices grouped by spatial tile, each tile cut into runs of at most ``max_batch`` (row order)."""
    tile_x = (layout.col - layout.col.min()) // tile_size
    tile_y = (layout.row - layout.row.min()) // tile_size
    order = np.lexsort((layout.col, layout.row, tile_x, tile_y))
    keys = np.stack([tile_y[order], tile_x[order]], axis=1)
    starts = np.flatnonzero(np.any(np.diff(keys, axis=0) != 0, axis=1)) + 1
    for tile in np.split(order, starts):
        for k in range(0, len(tile), max_batch):
            yield tile[k : k + max_batch]


def _cut_batch(
    batch: np.ndarray,
    layout: _Layout,
    readers: Sequence[_GridReader],
    valid: np.ndarray,
    pool: ThreadPoolExecutor,
) -> np.ndarray:
    """Read one window per date around the batch's chips and cut them: ``[len(batch), T, C, S, S]``."""
    s = layout.size
    col0, row0 = int(layout.col[batch].min()), int(layout.row[batch].min())
    width = int(layout.col[batch].max()) - col0 + s
    height = int(layout.row[batch].max()) - row0 + s
    stack = np.zeros((len(batch), len(readers), len(BANDS), s, s), dtype=np.uint8)
    cols = layout.col[batch] - col0
    rows = layout.row[batch] - row0
    window = (col0 - int(layout.col.min()), row0 - int(layout.row.min()), width, height)
    # each reader (one open dataset) is used by one thread at a time
    for t, (data, ok) in enumerate(pool.map(lambda reader: reader.read(*window), readers)):
        # every s x s window of the read, as a view; picking the batch's chips copies only those
        chips = sliding_window_view(data, (s, s), axis=(1, 2))[:, rows, cols]  # [C, n, s, s]
        stack[:, t] = chips.transpose(1, 0, 2, 3)
        inside = sliding_window_view(ok, (s, s))[rows, cols]  # [n, s, s]
        valid[batch, t] = np.count_nonzero(inside, axis=(1, 2)) / (s * s)
    return stack


def _footprint_mask(footprint: Any, layout: _Layout, i: int) -> np.ndarray:
    """255 where the pixel centre lies inside the footprint (GDAL's rasterize rule), else 0."""
    s, res = layout.size, layout.resolution
    centres = (np.arange(s) + 0.5) * res
    xs = float(layout.col[i]) * res + centres
    ys = -float(layout.row[i]) * res - centres
    shapely.prepare(footprint)
    inside = shapely.contains_xy(footprint, xs[None, :], ys[:, None])
    if not inside.any():  # smaller than a pixel: mark the pixels it touches
        transform = Affine(res, 0.0, float(layout.col[i]) * res, 0.0, -res, -float(layout.row[i]) * res)
        return rasterize(
            [(footprint, 255)], out_shape=(s, s), transform=transform, fill=0, dtype="uint8", all_touched=True
        )
    return np.where(inside, np.uint8(255), np.uint8(0))


class _GridReader:
    """Reads windows of the global working grid from one acquisition (and its cloud mask) as uint8 R,G,B,NIR.

    Uses a direct windowed read when the image already lies on the grid (same CRS and resolution, pixel edges
    on grid lines), else a WarpedVRT onto the grid. Records read failures instead of raising.
    """

    def __init__(
        self, acq: Acquisition, crs: str, layout: _Layout, params: IngestParams, info: dict[str, Any]
    ) -> None:
        self.acq = acq
        self.problems: list[InputProblem] = []
        self._image: _Source | None = None
        self._cloud: _Source | None = None
        self._stretch: list[list[float]] | None = None
        try:
            self._image = _Source(acq.path, crs, layout, Resampling[params.resampling], imagery=True)
            self._stretch = _stretch_of(self._image, params.percentiles)
            info.update(self._image.describe(), stretch=self._stretch)
            if acq.cloud_mask is not None:
                self._cloud = _Source(acq.cloud_mask, crs, layout, Resampling.nearest, imagery=False)
                info["cloud_mask"]["read"] = self._cloud.mode
        except (RasterioError, OSError) as exc:
            info.setdefault("read", "failed")
            self._fail(exc)

    def read(self, col0: int, row0: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Bands ``[4, height, width]`` uint8 and validity ``[height, width]`` of a window of the working grid.

        ``col0``/``row0`` count from the grid's top-left pixel (``_Layout.grid_transform``).
        """
        empty = (np.zeros((len(BANDS), height, width), np.uint8), np.zeros((height, width), bool))
        if self.problems or self._image is None:
            return empty
        try:
            raw, ok = self._image.read(col0, row0, width, height)
            if self._cloud is not None:
                cloud, inside = self._cloud.read(col0, row0, width, height)
                ok &= ~(inside & (cloud[0] >= 128))
        except (RasterioError, OSError) as exc:
            self._fail(exc)
            return empty
        return self._to_bands(raw), ok

    def _fail(self, exc: Exception) -> None:
        files = self.acq.path.name + (
            f" or its cloud mask {self.acq.cloud_mask.name}" if self.acq.cloud_mask else ""
        )
        self.problems.append(
            InputProblem(
                "unreadable_image",
                str(self.acq.path),
                f"reading {files} failed part-way ({exception_reason(exc)}); "
                "its chips are marked invalid from there on",
                "re-export or re-download the file and re-run ingest",
            )
        )

    def _to_bands(self, raw: np.ndarray) -> np.ndarray:
        if self._stretch is not None:
            lo = np.array([b[0] for b in self._stretch], np.float32)[:, None, None]
            hi = np.array([b[1] for b in self._stretch], np.float32)[:, None, None]
            scaled = (raw.astype(np.float32) - lo) * (255.0 / (hi - lo))
            raw = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        out = np.zeros((len(BANDS), *raw.shape[1:]), np.uint8)
        if raw.shape[0] == 1:
            out[:3] = raw[0]
        else:
            out[: raw.shape[0]] = raw
        return out

    def close(self) -> None:
        if self._image is not None:
            self._image.close()
        if self._cloud is not None:
            self._cloud.close()


class _Source:
    """One GeoTIFF seen through the working grid: band selection, nodata/alpha validity, direct or warped reads."""

    def __init__(
        self, path: Path, crs: str, layout: _Layout, resampling: Resampling, *, imagery: bool
    ) -> None:
        self.path = path
        self.src = rasterio.open(path)
        self.alpha = _alpha_band(self.src)
        data_bands = [i for i in range(1, self.src.count + 1) if i != self.alpha]
        self.indexes = data_bands[: len(BANDS)] if imagery else data_bands[:1]
        self.nodata = self.src.nodata
        self.internal_mask = all(MaskFlags.per_dataset in flags for flags in self.src.mask_flag_enums)
        grid = layout.grid_transform
        st = self.src.transform
        res = layout.resolution
        offset_x, offset_y = (st.c - grid.c) / res, (grid.f - st.f) / res
        direct = (
            CRS.from_user_input(self.src.crs).equals(CRS.from_user_input(crs))
            and math.isclose(st.a, res, rel_tol=1e-9)
            and math.isclose(st.e, -res, rel_tol=1e-9)
            and st.b == 0
            and st.d == 0
            and abs(offset_x - round(offset_x)) < 1e-6
            and abs(offset_y - round(offset_y)) < 1e-6
        )
        self.mode = "direct" if direct else "warp"
        self.offset = (round(offset_x), round(offset_y))
        self.vrt: WarpedVRT | None = None
        if not direct:
            height, width = layout.grid_shape
            self.vrt = WarpedVRT(
                self.src,
                crs=crs,
                transform=grid,
                width=width,
                height=height,
                resampling=resampling,
                tolerance=1e-9,  # ~exact transformer: a pixel's value must not depend on the window read
                add_alpha=self.nodata is None and self.alpha is None and imagery,
            )

    @property
    def dtype(self) -> str:
        return str(self.src.dtypes[self.indexes[0] - 1])

    def describe(self) -> dict[str, Any]:
        return {
            "source_crs": self.src.crs.to_string(),
            "source_resolution": [abs(self.src.transform.a), abs(self.src.transform.e)],
            "band_count": self.src.count,
            "bands_used": self.indexes,
            "dtype": self.dtype,
            "nodata": self.nodata,
            "read": self.mode,
        }

    def read(self, col0: int, row0: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw data ``[bands, height, width]`` (source dtype) and validity for a window of the global grid."""
        if self.vrt is not None:
            window = Window(col0, row0, width, height)
            data = self.vrt.read(self.indexes, window=window)
            ok = self._validity(data, lambda: self.vrt.dataset_mask(window=window) > 0)  # type: ignore[union-attr]
            return data, ok
        # direct: intersect the window with the image and paste
        data = np.zeros((len(self.indexes), height, width), dtype=self.dtype)
        ok = np.zeros((height, width), dtype=bool)
        x0, y0 = col0 - self.offset[0], row0 - self.offset[1]
        xa, ya = max(x0, 0), max(y0, 0)
        xb, yb = min(x0 + width, self.src.width), min(y0 + height, self.src.height)
        if xa >= xb or ya >= yb:
            return data, ok
        window = Window(xa, ya, xb - xa, yb - ya)
        part = self.src.read(self.indexes, window=window)
        sl = (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
        data[:, sl[0], sl[1]] = part
        ok[sl] = self._validity(part, lambda: self.src.dataset_mask(window=window) > 0)
        return data, ok

    def _validity(self, data: np.ndarray, dataset_mask: Callable[[], np.ndarray]) -> np.ndarray:
        if self.nodata is not None and not (isinstance(self.nodata, float) and math.isnan(self.nodata)):
            return ~np.all(data == self.nodata, axis=0)
        if self.nodata is not None:
            return ~np.all(np.isnan(data), axis=0)
        if self.vrt is not None or self.alpha is not None or self.internal_mask:
            return dataset_mask()
        return np.ones(data.shape[1:], dtype=bool)

    def close(self) -> None:
        if self.vrt is not None:
            self.vrt.close()
        self.src.close()


def _alpha_band(src: rasterio.DatasetReader) -> int | None:
    """The band that really is an alpha mask, if any.

    GDAL labels the 4th band of any 4-band uint8 GeoTIFF "alpha" by default, which would drop the NIR band of
    an RGBN image; a band counts as alpha only when it is labelled so *and* a decimated sample of it holds
    nothing but 0 and 255.
    """
    interps = list(src.colorinterp)
    if ColorInterp.alpha not in interps:
        return None
    index = interps.index(ColorInterp.alpha) + 1
    shape = (min(64, src.height), min(64, src.width))
    sample = src.read(index, out_shape=shape, resampling=Resampling.nearest)
    return index if np.isin(sample, (0, 255)).all() else None


def _stretch_of(source: _Source, percentiles: tuple[float, float]) -> list[list[float]] | None:
    """Per-band (low, high) stretch of a non-uint8 image from a decimated read; None for uint8."""
    if source.dtype == "uint8":
        return None
    src = source.src
    scale = max(1, math.ceil(max(src.width, src.height) / 1024))
    shape = (len(source.indexes), max(1, src.height // scale), max(1, src.width // scale))
    sample = src.read(source.indexes, out_shape=shape, resampling=Resampling.nearest).astype(np.float64)
    valid = np.ones(shape[1:], dtype=bool)
    if source.nodata is not None:
        valid = ~np.all((sample == source.nodata) | np.isnan(sample), axis=0)
    elif source.alpha is not None or source.internal_mask:
        valid = src.dataset_mask(out_shape=shape[1:]) > 0
    stretch = []
    for band in sample:
        values = band[valid & np.isfinite(band)]
        if values.size == 0:
            stretch.append([0.0, 1.0])
            continue
        lo, hi = np.percentile(values, percentiles)
        stretch.append([float(lo), float(hi) if hi > lo else float(lo) + 1.0])
    return stretch


# --- inputs, fingerprint, cache files --------------------------------------------------------------------------


def _describe_source(acq: Acquisition, memo: Mapping[str, tuple[int, int, str]]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": acq.date.isoformat(),
        "path": str(acq.path),
        "sensor": acq.sensor,
        "sha256": _sha256(acq.path, memo),
        **_stat(acq.path),
        "cloud_mask": None,
    }
    if acq.cloud_mask is not None:
        info["cloud_mask"] = {
            "path": str(acq.cloud_mask),
            "sha256": _sha256(acq.cloud_mask, memo),
            **_stat(acq.cloud_mask),
        }
    return info


def _stat(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _sha256(path: Path, memo: Mapping[str, tuple[int, int, str]]) -> str:
    """sha256 of a file; reuses the previous manifest's value when size and mtime are unchanged."""
    st = path.stat()
    known = memo.get(str(path))
    if known is not None and known[:2] == (st.st_size, st.st_mtime_ns):
        return known[2]
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _checksum_memo(manifest: Mapping[str, Any] | None) -> dict[str, tuple[int, int, str]]:
    memo: dict[str, tuple[int, int, str]] = {}
    if not manifest:
        return memo
    entries = list(manifest.get("sources", []))
    entries += [s["cloud_mask"] for s in manifest.get("sources", []) if s.get("cloud_mask")]
    entries += manifest.get("footprints", {}).get("files", [])
    for e in entries:
        if {"path", "size", "mtime_ns", "sha256"} <= set(e):
            memo[e["path"]] = (e["size"], e["mtime_ns"], e["sha256"])
    return memo


def _sidecars(path: Path) -> list[Path]:
    """The footprint file and, for a Shapefile, its sidecar files (.dbf, .shx, .prj, .cpg)."""
    if path.suffix.lower() != ".shp":
        return [path]
    return sorted(p for p in path.parent.glob(path.stem + ".*") if p.is_file())


def _fingerprint(
    params: IngestParams,
    crs: str,
    sources: list[dict[str, Any]],
    footprint_files: list[dict[str, Any]],
    problems: Sequence[InputProblem],
    memo: Mapping[str, tuple[int, int, str]],
) -> str:
    rejected_files = []
    for p in problems:
        path = Path(p.subject)
        digest = _sha256(path, memo) if path.is_file() else None
        rejected_files.append([p.kind, p.subject, digest])
    payload = {
        "version": FORMAT_VERSION,
        "params": params.layout(),
        "crs": crs,
        "images": [
            [s["date"], s["sensor"], s["sha256"], s["cloud_mask"]["sha256"] if s["cloud_mask"] else None]
            for s in sources
        ],
        "footprints": [f["sha256"] for f in footprint_files],
        "rejected": rejected_files,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _check_metric(crs: str) -> None:
    try:
        parsed = CRS.from_user_input(crs)
    except Exception as exc:  # pyproj raises CRSError, a plain Exception subclass
        raise ImageryError(
            f"working CRS {crs!r} is not a CRS ({exception_reason(exc)}); pass e.g. EPSG:32637"
        ) from exc
    units = {axis.unit_name for axis in parsed.axis_info}
    if not parsed.is_projected or not units <= {"metre", "meter"}:
        raise ImageryError(
            f"working CRS {crs!r} is not a metric projected CRS (units {sorted(units)}); "
            "pass a UTM zone such as EPSG:32637, or leave it out to use the footprints' UTM zone"
        )


def _bounds_box(path: Path, crs: str) -> Any:
    with rasterio.open(path) as src:
        return shapely.box(*transform_bounds(src.crs, crs, *src.bounds, densify_pts=21))


def _inside_any(buildings: list[Building], boxes: list[Any]) -> tuple[list[Building], list[InputProblem]]:
    geoms = np.array([b.footprint for b in buildings], dtype=object)
    inside = np.zeros(len(buildings), dtype=bool)
    for box in boxes:
        inside |= shapely.intersects(geoms, box)
    problems = [
        InputProblem(
            "outside_imagery",
            b.id,
            "the footprint lies outside every image",
            "check the CRS of the footprints and the imagery",
        )
        for b, ok in zip(buildings, inside, strict=True)
        if not ok
    ]
    return [b for b, ok in zip(buildings, inside, strict=True) if ok], problems


def _read_manifest(cache: Path) -> dict[str, Any] | None:
    path = cache / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CacheError(f"{path}: unreadable manifest ({exc}); delete the folder and re-run ingest") from exc
    return manifest if isinstance(manifest, dict) else None


_WRITE_ERRNOS = {
    errno.ENOSPC,
    errno.EFBIG,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
}
"""Errors of a folder that cannot take the cache (full, read-only, not a folder), as opposed to bad input."""


def _build_tag() -> str:
    """``<host>-<pid>-<random>``: names a build's temporary folders so a later run can tell dead ones."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _clear_dead_builds(out: Path) -> None:
    """Remove the temporary folders of builds of ``out`` killed on this host (their process is gone).

    A build killed with SIGKILL cannot clean up after itself; its half-written ``.NAME.tmp-*`` folder (or the
    previous cache set aside as ``.NAME.old-*``) is never read, but would hold its disk space forever.
    """
    if not out.parent.is_dir():
        return
    pattern = re.compile(rf"\.{re.escape(out.name)}\.(tmp|old)-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{{8}}")
    for sibling in out.parent.iterdir():
        match = pattern.fullmatch(sibling.name)
        if match is None or match["host"] != socket.gethostname():
            continue
        try:
            os.kill(int(match["pid"]), 0)
        except ProcessLookupError:
            shutil.rmtree(sibling, ignore_errors=True)
        except PermissionError:
            continue  # alive, owned by someone else


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Replace ``out`` by the finished ``tmp`` folder with renames (readers of the old files keep them)."""
    old = out.parent / f".{out.name}.old-{_build_tag()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
