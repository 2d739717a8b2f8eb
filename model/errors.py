"""Exceptions and input-problem records of the ``model`` package.

Hierarchy::

    ModelError                    anything the model package refuses to do
     └── IngestError              ingestion cannot produce a chip cache (nothing valid remains)
          ├── ImageryError        no usable image in the timeline (all unreadable, no CRS, undated, ...)
          ├── FootprintError      no usable building footprint (empty file, unreadable, no CRS, ...)
          └── CacheError          a chip cache on disk is missing, incomplete or inconsistent

     ├── LabelError               a label table is empty, malformed, or names buildings/dates the cache lacks
     ├── DataMismatchError        chips, labels or a model come from different scenarios or timelines
     ├── ModelConfigError         a training config names an unknown backbone / temporal model / bad value
     └── RegistryError            the MLflow registry cannot do what was asked
          └── ChampionMissingError  no model carries the ``champion`` alias yet

    IngestWarning (UserWarning)   a problem with part of the input; that part is skipped, the rest ingested

Problems with *part* of the input (one corrupt GeoTIFF, three buildings outside every image) never raise: they
become :class:`InputProblem` records, are emitted as :class:`IngestWarning`, and are listed under ``rejects``
in the cache manifest. An exception is raised only when nothing valid remains; its message lists the problems.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

__all__ = [
    "CacheError",
    "ChampionMissingError",
    "DataMismatchError",
    "FootprintError",
    "ImageryError",
    "IngestError",
    "IngestWarning",
    "InputProblem",
    "LabelError",
    "ModelConfigError",
    "ModelError",
    "RegistryError",
    "summarize_problems",
]


@dataclass(frozen=True)
class InputProblem:
    """One rejected piece of input: what kind of problem, which file or building, why, and how to fix it.

    Attributes:
        kind: short machine-readable category, e.g. ``"unreadable_image"``, ``"missing_crs"``,
            ``"unparsable_date"``, ``"duplicate_id"``, ``"outside_imagery"``.
        subject: the file path or building id the problem is about.
        reason: what was wrong, including the value seen.
        fix: what the user should do about it.
    """

    kind: str
    subject: str
    reason: str
    fix: str

    def message(self) -> str:
        """One line for logs and warnings: ``subject: reason; fix``."""
        return f"{self.subject}: {self.reason}; {self.fix}"

    def to_dict(self) -> dict[str, str]:
        """The record as the manifest stores it."""
        return asdict(self)


class ModelError(Exception):
    """Base class of every error raised by the model package."""


class IngestError(ModelError):
    """Ingestion cannot produce a chip cache because nothing valid remains.

    Attributes:
        problems: the input problems that led here (may be empty when the cause is a single message).
    """

    def __init__(self, message: str, problems: Sequence[InputProblem] = ()) -> None:
        details = "".join(f"\n  - {p.message()}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(message + details + more)
        self.problems = tuple(problems)


class ImageryError(IngestError):
    """No usable image: every GeoTIFF of the timeline was rejected, or the imagery path is wrong."""


class FootprintError(IngestError):
    """No usable building footprint: the file is empty, unreadable, or every feature was rejected."""


class CacheError(IngestError):
    """A chip cache on disk is missing, half-written or does not match its manifest."""


class LabelError(ModelError):
    """A label table is empty, malformed, or names buildings or dates the chip cache does not have."""


class DataMismatchError(ModelError):
    """Chips, labels or a model do not belong together (another scenario, other dates, other bands)."""


class ModelConfigError(ModelError):
    """A training configuration names an unknown backbone or temporal model, or carries an invalid value."""


class RegistryError(ModelError):
    """The MLflow registry cannot do what was asked (unknown run, model or version)."""


class ChampionMissingError(RegistryError):
    """No version of the registered model carries the ``champion`` alias yet."""


class IngestWarning(UserWarning):
    """Part of the input was rejected; the rest is ingested (see the manifest's ``rejects``)."""


def summarize_problems(
    problems: Iterable[InputProblem], source: str | None = None, max_ids: int = 10
) -> list[str]:
    """Group building-level problems of one kind into one readable line each.

    ``outside_imagery`` problems for 3 buildings of ``footprints.gpkg`` become
    ``"footprints.gpkg: 3 buildings lie outside every image (ids B12, B77, B80); check the CRS"``-style lines
    when the reasons share a prefix; problems about files stay one line each.

    Args:
        problems: the records to summarize.
        source: the footprint file the grouped building problems come from (named first in the line).
        max_ids: how many ids to name before writing ``...``.

    Returns:
        One message per group.
    """
    groups: dict[tuple[str, tuple[str, str], str], list[str]] = {}
    lines: list[str] = []
    for p in problems:
        if p.kind in _GROUPED:
            groups.setdefault((p.kind, _GROUPED[p.kind], p.fix), []).append(p.subject)
        else:
            lines.append(p.message())
    for (_, (one, several), fix), ids in groups.items():
        shown = ", ".join(ids[:max_ids]) + (", ..." if len(ids) > max_ids else "")
        what = (
            f"1 building {one} (id {shown})"
            if len(ids) == 1
            else f"{len(ids)} buildings {several} (ids {shown})"
        )
        prefix = f"{source}: " if source else ""
        lines.append(f"{prefix}{what}; {fix}")
    return lines


_GROUPED = {  # kind -> (one building ..., several buildings ...)
    "outside_imagery": ("lies outside every image", "lie outside every image"),
    "duplicate_id": ("repeats an id used by an earlier feature", "repeat an id used by an earlier feature"),
    "missing_id": ("has no id", "have no id"),
    "bad_geometry": ("has an empty or unsupported geometry", "have an empty or unsupported geometry"),
}


def exception_reason(exc: BaseException) -> str:
    """The most specific one-line message in an exception chain.

    rasterio raises "Read failed. See previous exception for details." with GDAL's own text (e.g.
    "ZIPDecode:Decoding error at scanline 0") on the chained cause; users need the latter.
    """
    messages: list[str] = []
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        text = str(seen).strip().strip("'\"()").strip()
        if text:
            messages.append(text.splitlines()[0])
        seen = seen.__cause__ or seen.__context__
    useful = [m for m in messages if "see previous exception" not in m.lower()]
    if useful:
        return useful[-1]
    return messages[0] if messages else type(exc).__name__
