"""The ingest pipeline: a timeline of GeoTIFFs and a footprint file in, a chip cache out.

:func:`ingest` turns a timeline of GeoTIFFs (any CRS, resolution, band count, uint8/uint16/float) and a
footprint file into a chip cache (format in docs/CONTRACTS.md, "Chip cache"):

1. Working grid: a metric CRS (the UTM zone of the footprints' centre unless given) at ``resolution`` metres,
   with pixel edges on multiples of the resolution, so every chip is an exact window of it.
2. Each building gets a ``chip_size``-pixel square centred on its footprint centroid, and a footprint mask.
3. Buildings are grouped into spatial tiles of ``tile_size`` pixels (at most ``max_batch`` buildings per read).
   For each tile and date one window is read from the date's image aligned to the grid
   (:mod:`model.chips.rasters`), all the tile's chips are cut from it and written to the cache files. Memory
   stays bounded by one window per read, whatever the city size.
4. Bands become R, G, B, NIR; non-uint8 images get a per-image, per-band linear stretch from the
   ``percentiles`` (default 2nd and 98th, over valid pixels of a decimated read of the whole image) to 0..255.
5. Validity per chip: the fraction of its pixels that lie inside the image, are not nodata (all bands equal to
   the nodata value, or masked by an alpha band / internal mask) and are not cloud (cloud mask >= 128).

The cache is identified by a fingerprint (:mod:`model.chips.checksums`); a re-run with the same fingerprint
reuses it without work. A new cache is written to a temporary sibling folder and renamed into place, so a
half-written cache is never taken for a valid one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import json
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from affine import Affine
from numpy.lib.stride_tricks import sliding_window_view
from pyproj import CRS
from rasterio.features import rasterize
from rasterio.warp import transform_bounds

from model.buildings import Building, footprints_centroid_lonlat, read_footprints
from model.chips.checksums import (
    checksum_memo,
    describe_source,
    file_sha256,
    file_stat,
    fingerprint_of,
    sidecars,
)
from model.chips.rasters import GDAL_CACHE_MB, GridLayout, GridReader, MosaicReader, open_reader
from model.chips.stack import BANDS, CHIPS, FORMAT_VERSION, MANIFEST, MASK, VALID, ChipStack, read_manifest
from model.errors import (
    CacheError,
    FootprintError,
    ImageryError,
    IngestWarning,
    InputProblem,
    exception_reason,
    summarize_problems,
)
from model.temporaries import WRITER_TAG, clear_dead_temporaries, writer_tag
from model.timeline import Timeline, load_timeline, utm_crs_for

__all__ = ["IngestParams", "ProgressFn", "ingest"]

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
    previous = read_manifest(out)
    if previous is None and out.exists() and any(out.iterdir()):
        raise CacheError(f"{out}: exists and is not a chip cache; choose an empty or new folder for --out")

    crs = params.crs or utm_crs_for(*footprints_centroid_lonlat(footprints))
    _check_metric(crs)
    timeline = load_timeline(imagery, crs=crs, resolution=params.resolution, warn=False)
    buildings, building_problems = read_footprints(
        footprints, crs, params.point_size_m, id_column=params.id_column
    )
    memo = checksum_memo(previous)
    sources = [describe_source(acq, memo) for acq in timeline.acquisitions]
    footprint_files = [
        {"path": str(p), "sha256": file_sha256(p, memo), **file_stat(p)} for p in sidecars(footprints)
    ]
    fingerprint = fingerprint_of(params, crs, sources, footprint_files, timeline.problems, memo)

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

    boxes = [_bounds_box(tile.path, crs) for acq in timeline.acquisitions for tile in acq.files]
    buildings, outside = _inside_any(buildings, boxes)
    building_problems += outside
    problems = list(timeline.problems) + building_problems
    if warn:
        for line in summarize_problems(problems, source=footprints.name):
            warnings.warn(line, IngestWarning, stacklevel=2)
    if not buildings:
        raise FootprintError(f"{footprints}: no building lies inside any image", problems)

    tmp = out.parent / f".{out.name}.tmp-{writer_tag()}"
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
    layout = GridLayout(
        col=np.round(cx / res).astype(np.int64) - s // 2,
        row=np.round(-cy / res).astype(np.int64) - s // 2,
        size=s,
        resolution=res,
    )
    chip_bytes = t * c * s * s
    valid = np.zeros((n, t), dtype=np.float32)
    read_problems: list[InputProblem] = []
    with (
        rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024 * 1024),
        (folder / CHIPS).open("wb") as chips_file,
        (folder / MASK).open("wb") as mask_file,
        ThreadPoolExecutor(max_workers=max(1, params.workers)) as pool,
    ):
        chips_file.truncate(n * chip_bytes)
        mask_file.truncate(n * s * s)
        readers = [
            open_reader(acq, crs, layout, params, src_info)
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


def _batches(layout: GridLayout, tile_size: int, max_batch: int) -> Iterator[np.ndarray]:
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
    layout: GridLayout,
    readers: Sequence[GridReader | MosaicReader],
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


def _footprint_mask(footprint: Any, layout: GridLayout, i: int) -> np.ndarray:
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


def _clear_dead_builds(out: Path) -> None:
    """Remove the temporary folders of builds of ``out`` killed on this host (their process is gone).

    A build killed with SIGKILL cannot clean up after itself; its half-written ``.NAME.tmp-*`` folder (or the
    previous cache set aside as ``.NAME.old-*``) is never read, but would hold its disk space forever.
    """
    clear_dead_temporaries(out.parent, rf"\.{re.escape(out.name)}\.(tmp|old)-{WRITER_TAG}")


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Replace ``out`` by the finished ``tmp`` folder with renames (readers of the old files keep them)."""
    old = out.parent / f".{out.name}.old-{writer_tag()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
