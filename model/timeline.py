"""The Timeline contract: ordered image acquisitions of one area on one working grid.

A timeline of T images defines T + 1 *destruction gaps* (DESIGN section 3): gap 0 means the building is
already damaged in the first image, gap i (1 <= i < T) means intact in image i and damaged in image i + 1
(1-based), gap T means not damaged by the last image. Every component that talks about "when" speaks in gaps.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import rasterio
from rasterio.errors import RasterioError
from rasterio.warp import transform_bounds

from model.errors import ImageryError, IngestWarning, InputProblem, exception_reason

__all__ = ["Acquisition", "Timeline", "gap_interval", "load_timeline", "parse_date", "utm_crs_for"]


def gap_interval(dates: Sequence[dt.date], gap: int) -> tuple[dt.date | None, dt.date | None]:
    """Dates bounding ``gap`` on a timeline of ``dates``: (last date intact, first date damaged); None is open."""
    if not 0 <= gap <= len(dates):
        raise ValueError(f"gap {gap} out of range 0..{len(dates)}")
    last_intact = dates[gap - 1] if gap >= 1 else None
    first_damaged = dates[gap] if gap < len(dates) else None
    return last_intact, first_damaged


@dataclass(frozen=True)
class Acquisition:
    """One image of the timeline.

    Attributes:
        date: acquisition date.
        path: the GeoTIFF on disk (the first tile's, for a mosaic).
        sensor: free-text sensor name (``"WV3"``, ``"scenario"``, ...).
        cloud_mask: optional single-band GeoTIFF on any grid, values >= 128 mean cloud (255 = cloud).
        tiles: for a date delivered as several images (a city is dozens of tiles per date), one acquisition
            per image (each with its own cloud mask), mosaicked on the fly by ingestion
            (:class:`model.chips.rasters.MosaicReader`); empty for a single image.
    """

    date: dt.date
    path: Path
    sensor: str = "unknown"
    cloud_mask: Path | None = None
    tiles: tuple[Acquisition, ...] = ()

    @property
    def files(self) -> tuple[Acquisition, ...]:
        """The single-image acquisitions this date is made of (itself, or its tiles)."""
        return self.tiles or (self,)


@dataclass(frozen=True)
class Timeline:
    """Acquisitions sorted by date, and the metric working CRS every date is aligned to.

    Attributes:
        acquisitions: the images, strictly increasing in date.
        crs: the working CRS as an authority string, e.g. ``"EPSG:32637"`` (UTM 37N, metres).
        resolution: working pixel size in metres.
        rejected: one readable line per input that was left out (see ``problems`` for the records).
        problems: the rejected inputs as records (file, reason, fix), listed in the chip-cache manifest.
    """

    acquisitions: tuple[Acquisition, ...]
    crs: str
    resolution: float = 0.5
    rejected: tuple[str, ...] = field(default=(), compare=False)
    problems: tuple[InputProblem, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        dates = [a.date for a in self.acquisitions]
        if any(b <= a for a, b in itertools.pairwise(dates)):
            raise ValueError(
                f"timeline dates must be strictly increasing, got {[d.isoformat() for d in dates]}"
            )

    @property
    def dates(self) -> tuple[dt.date, ...]:
        return tuple(a.date for a in self.acquisitions)

    @property
    def n_dates(self) -> int:
        return len(self.acquisitions)

    @property
    def n_gaps(self) -> int:
        """Number of destruction gaps, T + 1."""
        return len(self.acquisitions) + 1

    def gap_interval(self, gap: int) -> tuple[dt.date | None, dt.date | None]:
        """Dates bounding a gap: (last date seen intact, first date seen damaged); None is open-ended."""
        return gap_interval(self.dates, gap)


# --- loading ---------------------------------------------------------------------------------------------------

_IMAGE_SUFFIXES = (".tif", ".tiff")
_MANIFEST_NAME = "manifest.csv"
# Tags that name the acquisition time, most specific first. TIFFTAG_DATETIME is the file's own time stamp
# (often the processing date), so it is only used when neither these nor the file name give a date.
_ACQUISITION_TAGS = ("ACQUISITION_DATE", "ACQUISITIONDATETIME", "DATE_ACQUIRED", "ACQUISITION_TIME", "DATE")
_FALLBACK_TAGS = ("TIFFTAG_DATETIME",)
_SENSOR_TAGS = ("SENSOR", "SATELLITE", "PLATFORM", "SPACECRAFT")
_DATE_PATTERNS = (
    re.compile(r"(?<!\d)(\d{4})[-_:.](\d{2})[-_:.](\d{2})(?!\d)"),
    re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)"),
)


def parse_date(text: str) -> dt.date | None:
    """The first plausible calendar date in ``text`` (``YYYY-MM-DD``, ``YYYY_MM_DD``, ``YYYY:MM:DD``, ``YYYYMMDD``).

    Args:
        text: a file name, tag value or CSV cell.

    Returns:
        The date, or None when no valid date is found (``2017-13-40`` is not a date).
    """
    for pattern in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            year, month, day = (int(g) for g in match.groups())
            try:
                return dt.date(year, month, day)
            except ValueError:
                continue
    return None


def utm_crs_for(lon: float, lat: float) -> str:
    """The WGS 84 / UTM zone CRS containing a point, as ``"EPSG:326zz"`` (north) or ``"EPSG:327zz"`` (south)."""
    zone = min(60, max(1, int((lon + 180.0) // 6.0) + 1))
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


def load_timeline(
    imagery: Path,
    crs: str | None = None,
    resolution: float = 0.5,
    *,
    warn: bool = True,
) -> Timeline:
    """Build a Timeline from a folder of GeoTIFFs or a manifest CSV.

    A folder is read non-recursively (``*.tif``/``*.tiff``); if it holds a ``manifest.csv`` (as a scenario
    folder does) that manifest is used instead. Each image's date comes from an acquisition tag in its metadata
    (``ACQUISITION_DATE``, ...), else from its file name (``2017-06-14.tif``, ``raqqa_20170614_wv3.tif``), else
    from ``TIFFTAG_DATETIME``. A manifest CSV has columns ``date, path`` and optionally ``sensor`` and
    ``cloud_mask``; relative paths are relative to the CSV's folder.

    Several images of one date are that date's tiles: they become one :class:`Acquisition` whose ``tiles`` are
    mosaicked on the fly at ingestion (first tile in path order first where they overlap). Images that cannot be
    opened or read, have no CRS or have no parsable date, and a file listed twice, are left out; each becomes an
    :class:`~model.errors.InputProblem` in ``Timeline.problems`` and (with ``warn``) an
    :class:`~model.errors.IngestWarning`.

    Args:
        imagery: a folder of GeoTIFFs, or a manifest CSV.
        crs: working CRS (metric); None picks the UTM zone of the images' centre.
        resolution: working pixel size in metres.
        warn: emit an IngestWarning per rejected input.

    Returns:
        The timeline of the usable images, sorted by date.

    Raises:
        ImageryError: the path does not exist, the manifest lacks required columns, or no image is usable.
    """
    imagery = Path(imagery)
    if imagery.is_dir() and (imagery / _MANIFEST_NAME).is_file():
        imagery = imagery / _MANIFEST_NAME
    problems: list[InputProblem] = []
    if imagery.is_file() and imagery.suffix.lower() == ".csv":
        candidates = _read_manifest(imagery, problems)
    elif imagery.is_dir():
        candidates = _scan_folder(imagery, problems)
    elif imagery.is_file() and imagery.suffix.lower() in _IMAGE_SUFFIXES:
        candidates = _scan_files([imagery], problems)
    else:
        raise ImageryError(
            f"{imagery}: not a folder of GeoTIFFs or a manifest CSV; pass the imagery folder or its manifest.csv"
        )

    candidates.sort(key=lambda c: (c.date, str(c.path)))
    acquisitions: list[Acquisition] = []
    for date, group in itertools.groupby(candidates, key=lambda c: c.date):
        tiles: list[Acquisition] = []
        for cand in group:
            if any(t.path.resolve() == cand.path.resolve() for t in tiles):
                problems.append(
                    InputProblem(
                        "duplicate_date",
                        str(cand.path),
                        f"the image is listed twice for date {date.isoformat()}",
                        "list each image once",
                    )
                )
                continue
            tiles.append(cand)
        if len(tiles) == 1:
            acquisitions.append(tiles[0])
        else:
            sensor = "+".join(dict.fromkeys(t.sensor for t in tiles))
            acquisitions.append(Acquisition(date=date, path=tiles[0].path, sensor=sensor, tiles=tuple(tiles)))

    if warn:
        for problem in problems:
            warnings.warn(problem.message(), IngestWarning, stacklevel=2)
    if not acquisitions:
        raise ImageryError(f"{imagery}: no usable image remains", problems)
    if crs is None:
        crs = _utm_of_images(acquisitions)
    return Timeline(
        acquisitions=tuple(acquisitions),
        crs=crs,
        resolution=resolution,
        rejected=tuple(p.message() for p in problems),
        problems=tuple(problems),
    )


def _scan_folder(folder: Path, problems: list[InputProblem]) -> list[Acquisition]:
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
    if not paths:
        raise ImageryError(
            f"{folder}: no GeoTIFF (*.tif, *.tiff) found; point to the folder holding the images"
        )
    return _scan_files(paths, problems)


def _scan_files(paths: list[Path], problems: list[InputProblem]) -> list[Acquisition]:
    found = []
    for path in paths:
        tags = _inspect_image(path, problems)
        if tags is None:
            continue
        date = _date_of(path, tags)
        if date is None:
            problems.append(
                InputProblem(
                    "unparsable_date",
                    str(path),
                    f"no acquisition date in the file name {path.name!r} or its metadata tags",
                    "name the file like 2017-06-14.tif or 20170614.tif, set an ACQUISITION_DATE tag, "
                    "or list it in a manifest CSV with a date column",
                )
            )
            continue
        sensor = next((tags[k] for k in _SENSOR_TAGS if tags.get(k)), "unknown")
        found.append(Acquisition(date=date, path=path, sensor=sensor))
    return found


def _read_manifest(manifest: Path, problems: list[InputProblem]) -> list[Acquisition]:
    try:
        with manifest.open(newline="") as f:
            rows = list(csv.DictReader(f))
            columns = [c.strip().lower() for c in (rows[0].keys() if rows else [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ImageryError(f"{manifest}: cannot read the manifest CSV ({exc}); check the file") from exc
    if not rows:
        raise ImageryError(
            f"{manifest}: the manifest has no rows; list one image per row (date, path, sensor)"
        )
    missing = {"date", "path"} - set(columns)
    if missing:
        raise ImageryError(
            f"{manifest}: missing column(s) {sorted(missing)} (columns seen: {columns}); "
            "the manifest needs date, path and optionally sensor, cloud_mask"
        )
    found = []
    for number, raw in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        where = f"{manifest} row {number}"
        path = (manifest.parent / row["path"]).resolve() if row["path"] else None
        if path is None or not path.is_file():
            problems.append(
                InputProblem(
                    "missing_file",
                    where,
                    f"image {row['path']!r} does not exist",
                    "fix the path (relative paths are relative to the manifest's folder)",
                )
            )
            continue
        date = _parse_cell_date(row["date"])
        if date is None:
            problems.append(
                InputProblem(
                    "unparsable_date",
                    where,
                    f"date {row['date']!r} of {path.name} cannot be parsed",
                    "write dates as YYYY-MM-DD",
                )
            )
            continue
        if _inspect_image(path, problems) is None:
            continue
        cloud = None
        if row.get("cloud_mask"):
            cloud = (manifest.parent / row["cloud_mask"]).resolve()
            if _inspect_image(cloud, problems, what="cloud mask") is None:
                cloud = None
        found.append(
            Acquisition(date=date, path=path, sensor=row.get("sensor") or "unknown", cloud_mask=cloud)
        )
    return found


def _parse_cell_date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        return parse_date(text) if re.fullmatch(r"[\d\-_:./ T]+", text) else None


def _inspect_image(path: Path, problems: list[InputProblem], what: str = "image") -> dict[str, str] | None:
    """Open a GeoTIFF and read one pixel of its last block; return its tags, or None after recording why not."""
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                problems.append(
                    InputProblem(
                        "missing_crs",
                        str(path),
                        f"the {what} has no CRS (no georeferencing)",
                        "georeference it (e.g. gdal_translate -a_srs EPSG:32637 with -a_ullr) or export it "
                        "with its CRS",
                    )
                )
                return None
            src.read(1, window=((src.height - 1, src.height), (src.width - 1, src.width)))
            tags = {k.upper(): v for k, v in src.tags().items()}
    except (RasterioError, OSError) as exc:
        problems.append(
            InputProblem(
                "unreadable_image",
                str(path),
                f"the {what} cannot be read as a GeoTIFF ({exception_reason(exc)})",
                "re-export or re-download the file, or remove it from the imagery",
            )
        )
        return None
    return tags


def _date_of(path: Path, tags: dict[str, str]) -> dt.date | None:
    for key in _ACQUISITION_TAGS:
        if key in tags and (date := parse_date(tags[key])) is not None:
            return date
    if (date := parse_date(path.stem)) is not None:
        return date
    for key in _FALLBACK_TAGS:
        if key in tags and (date := parse_date(tags[key])) is not None:
            return date
    return None


def _utm_of_images(acquisitions: list[Acquisition]) -> str:
    lons, lats = [], []
    for acq in (tile for a in acquisitions for tile in a.files):
        with rasterio.open(acq.path) as src:
            west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        lons.append((west + east) / 2)
        lats.append((south + north) / 2)
    return utm_crs_for(sum(lons) / len(lons), sum(lats) / len(lats))
