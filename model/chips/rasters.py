"""Raster reading onto the working grid: windows of one acquisition as uint8 R, G, B, NIR plus validity.

The working grid is a metric CRS at ``resolution`` metres with pixel edges on multiples of the resolution
(:class:`GridLayout`). A :class:`RasterSource` reads a window of the grid from one GeoTIFF: a direct windowed
read when the image already lies on the grid, else through a ``rasterio.vrt.WarpedVRT``; a
:class:`GridReader` adds the cloud mask, the band mapping (4+ bands take the first four, 3 bands get NIR = 0,
1 band is copied to R, G, B) and the linear stretch of non-uint8 images, and records read failures instead of
raising. A date delivered as several tiles is read by a :class:`MosaicReader`: one GridReader per tile, each
through its own WarpedVRT onto the grid (GDAL's virtual warped raster, nothing written to disk), composited
window by window where valid, the first tile first (as a ``gdalbuildvrt`` mosaic orders its sources). Unlike a
plain mosaic VRT this also takes tiles in other CRSs, rotated or of other resolutions.

torchgeo's ``RasterDataset`` is not used here: it answers "pixels of this bounding box" by merging every file
that intersects it (a WarpedVRT per file per query), which is the per-building read the ingest pipeline
replaces with one read per tile; chips centred per building on a fixed grid need none of its index or samplers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from model.chips.stack import BANDS
from model.errors import InputProblem, exception_reason
from model.timeline import Acquisition

if TYPE_CHECKING:  # the pipeline imports this module
    from model.chips.pipeline import IngestParams

__all__ = [
    "GDAL_CACHE_MB",
    "GridLayout",
    "GridReader",
    "MosaicReader",
    "RasterSource",
    "alpha_band",
    "open_reader",
    "stretch_of",
]

GDAL_CACHE_MB = 64


@dataclass
class GridLayout:
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


class GridReader:
    """Reads windows of the global working grid from one acquisition (and its cloud mask) as uint8 R,G,B,NIR.

    Uses a direct windowed read when the image already lies on the grid (same CRS and resolution, pixel edges
    on grid lines), else a WarpedVRT onto the grid. Records read failures instead of raising.
    """

    def __init__(
        self, acq: Acquisition, crs: str, layout: GridLayout, params: IngestParams, info: dict[str, Any]
    ) -> None:
        self.acq = acq
        self.problems: list[InputProblem] = []
        self._image: RasterSource | None = None
        self._cloud: RasterSource | None = None
        self._stretch: list[list[float]] | None = None
        try:
            self._image = RasterSource(acq.path, crs, layout, Resampling[params.resampling], imagery=True)
            self._stretch = stretch_of(self._image, params.percentiles)
            info.update(self._image.describe(), stretch=self._stretch)
            if acq.cloud_mask is not None:
                self._cloud = RasterSource(acq.cloud_mask, crs, layout, Resampling.nearest, imagery=False)
                info["cloud_mask"]["read"] = self._cloud.mode
        except (RasterioError, OSError) as exc:
            info.setdefault("read", "failed")
            self._fail(exc)

    def read(self, col0: int, row0: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Bands ``[4, height, width]`` uint8 and validity ``[height, width]`` of a window of the working grid.

        ``col0``/``row0`` count from the grid's top-left pixel (``GridLayout.grid_transform``).
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


class MosaicReader:
    """Reads windows of the working grid from a date made of several tiles (module docstring).

    Each tile keeps its own stretch (non-uint8 tiles) and cloud mask; a tile whose footprint misses a window is
    not read for it.
    """

    def __init__(
        self, acq: Acquisition, crs: str, layout: GridLayout, params: IngestParams, info: dict[str, Any]
    ) -> None:
        self.acq = acq
        self.readers = [
            GridReader(tile, crs, layout, params, tile_info)
            for tile, tile_info in zip(acq.tiles, info["tiles"], strict=True)
        ]
        info["read"] = "mosaic"
        self.extents = [_grid_extent(tile.path, crs, layout) for tile in acq.tiles]

    @property
    def problems(self) -> list[InputProblem]:
        return [p for reader in self.readers for p in reader.problems]

    def read(self, col0: int, row0: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Bands ``[4, height, width]`` uint8 and validity ``[height, width]``, as :meth:`GridReader.read`."""
        bands = np.zeros((len(BANDS), height, width), np.uint8)
        ok = np.zeros((height, width), bool)
        for reader, (c0, r0, c1, r1) in zip(self.readers, self.extents, strict=True):
            if c1 <= col0 or c0 >= col0 + width or r1 <= row0 or r0 >= row0 + height:
                continue
            tile_bands, tile_ok = reader.read(col0, row0, width, height)
            fill = tile_ok & ~ok
            bands[:, fill] = tile_bands[:, fill]
            ok |= fill
            if ok.all():
                break
        return bands, ok

    def close(self) -> None:
        for reader in self.readers:
            reader.close()


def open_reader(
    acq: Acquisition, crs: str, layout: GridLayout, params: IngestParams, info: dict[str, Any]
) -> GridReader | MosaicReader:
    """The reader of one date: a :class:`GridReader`, or a :class:`MosaicReader` for a date of several tiles."""
    if acq.tiles:
        return MosaicReader(acq, crs, layout, params, info)
    return GridReader(acq, crs, layout, params, info)


def _grid_extent(path: Path, crs: str, layout: GridLayout) -> tuple[int, int, int, int]:
    """Pixel box ``(col0, row0, col1, row1)`` of the working grid an image covers (all of it if unreadable)."""
    try:
        with rasterio.open(path) as src:
            west, south, east, north = transform_bounds(src.crs, crs, *src.bounds, densify_pts=21)
    except (RasterioError, OSError):
        height, width = layout.grid_shape
        return 0, 0, width, height
    inverse = ~layout.grid_transform
    c0, r0 = inverse @ (west, north)
    c1, r1 = inverse @ (east, south)
    return math.floor(c0) - 1, math.floor(r0) - 1, math.ceil(c1) + 1, math.ceil(r1) + 1


class RasterSource:
    """One GeoTIFF seen through the working grid: band selection, nodata/alpha validity, direct or warped reads."""

    def __init__(
        self, path: Path, crs: str, layout: GridLayout, resampling: Resampling, *, imagery: bool
    ) -> None:
        self.path = path
        self.src = rasterio.open(path)
        self.alpha = alpha_band(self.src)
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


def alpha_band(src: rasterio.DatasetReader) -> int | None:
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


def stretch_of(source: RasterSource, percentiles: tuple[float, float]) -> list[list[float]] | None:
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
