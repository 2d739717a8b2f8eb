"""What crosses the wire: request bodies (``*In``) and responses (``*Out``), separate from the stored types.

The store's contracts (Annotation, Posterior, Decision) are frozen dataclasses; these pydantic models are the
JSON the API accepts and returns, each built from the stored records in one place (the routes), so a change of
storage never silently changes the API. Volunteer ids are the store's pseudonyms.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "AnnotationOut",
    "AuditOut",
    "BuildingDetailOut",
    "BuildingProperties",
    "CampaignOut",
    "ChipOut",
    "DecisionOut",
    "FeatureCollectionOut",
    "FeatureOut",
    "GapOut",
    "PosteriorOut",
    "QueueItemOut",
    "QueueOut",
    "RoundOut",
    "TimelineOut",
    "VerdictIn",
    "VerdictOut",
    "WeekOut",
]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class BuildingProperties(_Out):
    """One dated building as listed (the GeoJSON feature's properties)."""

    building_id: str
    status: str = Field(description="unlabelled, queued, in_review, settled, contested or expert")
    flags: list[str] = Field(description="contested, model_conflict, low_reliability")
    map_gap: int = Field(description="most probable destruction gap, 0..T (T = not damaged)")
    n_gaps: int = Field(description="T + 1")
    last_intact_date: dt.date | None = Field(description="last image showing the building intact (MAP gap)")
    first_damaged_date: dt.date | None = Field(description="first image showing it damaged (MAP gap)")
    earliest_date: dt.date | None = Field(description="earliest possible destruction: after this date (90%)")
    latest_date: dt.date | None = Field(description="latest possible destruction: by this date (90%)")
    ci90_gaps: list[int] = Field(description="shortest run of gaps holding 90% of the posterior")
    confidence: float = Field(description="posterior probability of the MAP gap")
    p_damaged: float = Field(description="probability of damage by the last image")
    reviews: int = Field(description="independent human reviews in the posterior")
    model_version: str | None = Field(description="model whose evidence entered, None for crowd only")
    posterior_version: int
    decision: str | None = Field(description="reason of the latest retirement decision")
    detail_url: str


class FeatureOut(_Out):
    type: Literal["Feature"] = "Feature"
    id: str
    geometry: dict[str, Any] | None
    properties: BuildingProperties


class FeatureCollectionOut(_Out):
    """GeoJSON FeatureCollection; ``coordinates`` says whether positions are lon/lat or plain units."""

    type: Literal["FeatureCollection"] = "FeatureCollection"
    coordinates: Literal["lonlat", "plain", "none"]
    note: str
    count: int
    features: list[FeatureOut]


class GapOut(_Out):
    gap: int
    last_intact_date: dt.date | None
    first_damaged_date: dt.date | None
    probability: float


class PosteriorOut(_Out):
    version: int
    status: str
    map_gap: int
    confidence: float
    n_reviews: int
    model_version: str | None
    aggregator: str
    created_at: dt.datetime
    gaps: list[GapOut]


class AnnotationOut(_Out):
    external_id: str = Field(description="idempotency key: ls:<id> (Label Studio), expert:<uuid>, ...")
    volunteer_id: str = Field(description="pseudonymous witness id")
    source: str
    states: list[str] = Field(description="one state per date, in date order")
    admitted_gaps: list[int] = Field(description="gaps all visible answers are consistent with")
    agrees_with_map: bool | None = Field(description="consistent with the current MAP gap")
    submitted_at: dt.datetime
    received_at: dt.datetime
    revision: int
    retracted: bool
    retracted_reason: str | None


class DecisionOut(_Out):
    status: str
    reason: str
    flags: list[str]
    map_gap: int
    confidence: float
    n_reviews: int
    n_consistent: int
    round_id: int | None
    decided_at: dt.datetime


class ChipOut(_Out):
    date_index: int
    date: dt.date
    url: str
    image_sha256: str | None = Field(description="sha256 of the source image of this date (chip manifest)")
    valid_fraction: float


class BuildingDetailOut(_Out):
    """One building with its evidence."""

    building_id: str
    dates: list[dt.date]
    properties: BuildingProperties | None = Field(description="None until the building has a posterior")
    geometry: dict[str, Any] | None
    coordinates: Literal["lonlat", "plain", "none"]
    posterior: PosteriorOut | None
    annotations: list[AnnotationOut]
    decisions: list[DecisionOut]
    chips: list[ChipOut]
    chip_cache_fingerprint: str | None


class VerdictIn(BaseModel):
    """A researcher's verdict: exactly one of ``gap``, ``first_damaged_date`` or ``not_damaged``."""

    model_config = ConfigDict(extra="forbid")

    gap: int | None = Field(None, description="destruction gap 0..T (T = not damaged)")
    first_damaged_date: dt.date | None = Field(
        None, description="the first image showing damage (a date of the building's timeline)"
    )
    not_damaged: bool = Field(False, description="not damaged by the last image")
    grade: Literal["damaged", "destroyed"] = "destroyed"
    not_visible: list[int] = Field(
        default_factory=list, max_length=1000, description="date indices the researcher could not judge"
    )
    reviewer: str = Field("researcher", pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    note: str = Field("", max_length=2000)

    @model_validator(mode="after")
    def _one_answer(self) -> VerdictIn:
        given = sum([self.gap is not None, self.first_damaged_date is not None, self.not_damaged])
        if given != 1:
            raise ValueError("give exactly one of gap, first_damaged_date or not_damaged")
        return self


class VerdictOut(_Out):
    building_id: str
    external_id: str
    status: str
    map_gap: int
    confidence: float
    posterior_version: int
    superseded: list[str]
    reason: str


class QueueItemOut(_Out):
    building_id: str
    status: str
    flags: list[str]
    map_gap: int
    confidence: float
    reviews: int
    reason: str | None


class QueueOut(_Out):
    kind: Literal["review", "labeling"]
    total: int
    items: list[QueueItemOut]


class RoundOut(_Out):
    id: int
    kind: str
    campaign: str | None = Field(description="the campaign it belongs to (None for aggregation rounds)")
    stage: str | None = Field(description="the last step a campaign round completed")
    model_version: str | None
    note: str
    started_at: dt.datetime
    finished_at: dt.datetime | None


class CampaignRunOut(_Out):
    """One campaign of the store (``striketracker campaign init``): its rounds, requests, models and audit."""

    name: str
    mode: str = Field(description="verify or estimate")
    labeler: str
    rounds: int = Field(description="finished rounds")
    open_round: int | None = Field(description="an interrupted round, or None")
    open_stage: str | None
    requests: dict[str, int] = Field(description="review requests per status")
    reviews_answered: int = Field(description="review requests answered by volunteers")
    model_settled: int = Field(description="buildings settled by the model alone")
    champion: str | None = Field(description="the champion the last finished round used")
    model_events: dict[str, int] = Field(description="trained, promoted, kept, skipped")
    audit: dict[str, float] = Field(
        description="estimate mode: accuracy of the model's dates on the audit sample, lo90, hi90, judged, sample"
    )


class AuditOut(_Out):
    """How often the system's date before a researcher's verdict matched the verdict."""

    buildings: int
    exact: int
    within_one: int
    accuracy: float | None
    within_one_accuracy: float | None


class CampaignOut(_Out):
    rounds: list[RoundOut]
    campaigns: list[CampaignRunOut]
    annotations_spent: int = Field(description="human reviews stored (volunteers, not researchers)")
    expert_verdicts: int
    buildings: int
    statuses: dict[str, int]
    settled: int
    contested: int
    flagged: int
    audit: AuditOut


class WeekOut(_Out):
    week_start: dt.date
    expected: float
    lo: float
    hi: float


class TimelineOut(_Out):
    band: float
    draws: int
    buildings: int
    before_first_image: float
    not_damaged: float
    weeks: list[WeekOut]
