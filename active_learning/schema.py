"""The annotation schema: per-date states reported by witnesses about one building.

An :class:`Annotation` is one review of one building's whole timeline. For aggregation it is flattened into
one long table with the columns named below (one row per building, volunteer, date).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

__all__ = [
    "COLUMNS",
    "COL_BUILDING",
    "COL_DATE_INDEX",
    "COL_EXTERNAL_ID",
    "COL_SOURCE",
    "COL_STATE",
    "COL_SUBMITTED",
    "COL_VOLUNTEER",
    "SOURCES",
    "Annotation",
    "Source",
    "State",
]


class State(IntEnum):
    """What a witness saw at one date. ``NOT_VISIBLE`` (cloud, nodata) carries no evidence."""

    INTACT = 0
    DAMAGED = 1
    DESTROYED = 2
    NOT_VISIBLE = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str | int) -> State:
        """Parse ``"intact"``/``"damaged"``/``"destroyed"``/``"not_visible"`` or the integer code."""
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[str(value).strip().upper().replace(" ", "_")]
        except KeyError:
            raise ValueError(
                f"unknown state {value!r}; expected one of {[s.label for s in cls]}"
            ) from None


Source = Literal["labelstudio", "simulated", "expert"]
SOURCES: tuple[str, ...] = ("labelstudio", "simulated", "expert")

COL_BUILDING = "building_id"
COL_VOLUNTEER = "volunteer_id"
COL_SOURCE = "source"
COL_DATE_INDEX = "date_index"
COL_STATE = "state"
COL_SUBMITTED = "submitted_at"
COL_EXTERNAL_ID = "external_id"
COLUMNS = (COL_BUILDING, COL_VOLUNTEER, COL_SOURCE, COL_DATE_INDEX, COL_STATE, COL_SUBMITTED, COL_EXTERNAL_ID)


@dataclass(frozen=True)
class Annotation:
    """One witness's review of one building's timeline.

    Attributes:
        building_id: the Building's id.
        volunteer_id: pseudonymous id (never an email or Label Studio user name).
        source: ``labelstudio``, ``simulated`` or ``expert``.
        states: one State per timeline date, in date order.
        submitted_at: when the review was submitted (UTC).
        external_id: idempotency key, e.g. ``"ls:1234"`` for Label Studio annotation 1234.
    """

    building_id: str
    volunteer_id: str
    source: Source
    states: tuple[State, ...]
    submitted_at: dt.datetime
    external_id: str
