"""The Building contract: a stable id, a footprint in the working CRS, and free attributes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shapely.geometry.base import BaseGeometry

__all__ = ["Building"]


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
