"""The Posterior contract: what the system believes about when one building was destroyed."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Posterior", "Status"]


class Status(StrEnum):
    UNLABELLED = "unlabelled"
    QUEUED = "queued"
    IN_REVIEW = "in_review"
    SETTLED = "settled"
    CONTESTED = "contested"
    EXPERT = "expert"


@dataclass(frozen=True)
class Posterior:
    """Per-building belief over destruction gaps (T + 1 of them, see model.timeline).

    Attributes:
        building_id: the Building's id.
        probs: probability of each gap, sums to 1.
        map_gap: most probable gap.
        interval: (last date intact, first date damaged) of the MAP gap; None is open-ended.
        confidence: probability mass of the MAP gap.
        n_reviews: independent human reviews that entered the posterior.
        status: where the building stands in the labelling workflow.
        model_version: the model (registry name/version) whose emissions entered, or None for crowd-only.
    """

    building_id: str
    probs: tuple[float, ...]
    map_gap: int
    interval: tuple[dt.date | None, dt.date | None]
    confidence: float
    n_reviews: int
    status: Status
    model_version: str | None
