"""The Timeline contract: ordered image acquisitions of one area on one working grid.

A timeline of T images defines T + 1 *destruction gaps* (DESIGN section 3): gap 0 means the building is
already damaged in the first image, gap i (1 <= i < T) means intact in image i and damaged in image i + 1
(1-based), gap T means not damaged by the last image. Every component that talks about "when" speaks in gaps.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Acquisition", "Timeline"]


@dataclass(frozen=True)
class Acquisition:
    """One image of the timeline.

    Attributes:
        date: acquisition date.
        path: the GeoTIFF on disk.
        sensor: free-text sensor name (``"WV3"``, ``"scenario"``, ...).
    """

    date: dt.date
    path: Path
    sensor: str = "unknown"


@dataclass(frozen=True)
class Timeline:
    """Acquisitions sorted by date, and the metric working CRS every date is aligned to.

    Attributes:
        acquisitions: the images, strictly increasing in date.
        crs: the working CRS as an authority string, e.g. ``"EPSG:32637"`` (UTM 37N, metres).
        resolution: working pixel size in metres.
    """

    acquisitions: tuple[Acquisition, ...]
    crs: str
    resolution: float = 0.5
    rejected: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        dates = [a.date for a in self.acquisitions]
        if any(b <= a for a, b in zip(dates, dates[1:], strict=False)):
            raise ValueError(f"timeline dates must be strictly increasing, got {[d.isoformat() for d in dates]}")

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
        if not 0 <= gap <= self.n_dates:
            raise ValueError(f"gap {gap} out of range 0..{self.n_dates}")
        dates = self.dates
        last_intact = dates[gap - 1] if gap >= 1 else None
        first_damaged = dates[gap] if gap < self.n_dates else None
        return last_intact, first_damaged
