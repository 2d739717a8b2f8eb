"""``/api/buildings``: the dated buildings as GeoJSON, one building with its evidence, a researcher's verdict."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from active_learning.posterior import Status
from active_learning.store import AnnotationRecord, BuildingRecord, PosteriorRecord, StoredDecision
from model.chips import ChipStack
from model.errors import CacheError
from serving.catalog import Snapshot, building_dates, dated_building
from serving.dependencies import (
    BuildingDep,
    BuildingRecordDep,
    KnownBuilding,
    ResourcesDep,
    SnapshotDep,
    TokenDep,
)
from serving.errors import VerdictError
from serving.routes.responses import ERRORS, field_error
from serving.schemas import (
    AnnotationOut,
    BuildingDetailOut,
    BuildingProperties,
    ChipOut,
    DecisionOut,
    FeatureCollectionOut,
    GapOut,
    PosteriorOut,
    VerdictIn,
    VerdictOut,
)
from serving.verdict import Verdict, admitted_gaps, apply_verdict

__all__ = ["router"]

router = APIRouter(prefix="/api/buildings", tags=["buildings"])

FlagName = Literal["contested", "model_conflict", "low_reliability", "any"]
"""The flags of active_learning.retirement, plus ``any`` (at least one flag)."""


def parse_bbox(bbox: str | None) -> tuple[float, float, float, float] | None:
    """``min_x,min_y,max_x,max_y`` as four floats (422 naming ``bbox`` otherwise)."""
    if bbox is None:
        return None
    try:
        values = tuple(float(v) for v in bbox.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or values[0] > values[2] or values[1] > values[3]:
        raise field_error(("query", "bbox"), "bbox must be min_x,min_y,max_x,max_y with min <= max")
    return values  # type: ignore[return-value]


@router.get(
    "",
    response_class=Response,
    summary="Dated buildings as a GeoJSON FeatureCollection",
    responses={
        200: {
            "model": FeatureCollectionOut,
            "content": {
                "application/geo+json": {"schema": {"$ref": "#/components/schemas/FeatureCollectionOut"}}
            },
        },
        422: ERRORS[422],
    },
)
def list_buildings(
    snapshot: SnapshotDep,
    status: Annotated[list[Status], Query(description="keep these statuses")] = [],  # noqa: B006
    flag: Annotated[list[FlagName], Query(description="keep buildings with any of these flags")] = [],  # noqa: B006
    after: Annotated[dt.date | None, Query(description="possibly destroyed on or after this date")] = None,
    before: Annotated[dt.date | None, Query(description="possibly destroyed on or before this date")] = None,
    bbox: Annotated[
        str | None, Query(description="min_x,min_y,max_x,max_y (lon/lat, or plain units)", max_length=200)
    ] = None,
    geometry: Annotated[Literal["point", "footprint"], Query(description="point or footprint")] = "point",
) -> Response:
    """Every building with a posterior: dates, MAP gap, confidence, reviews, status, flags, model version."""
    if after is not None and before is not None and after > before:
        raise field_error(("query", "after"), "after must not be later than before")
    chosen = snapshot.select(
        statuses=[str(s) for s in status], flags=flag, after=after, before=before, bbox=parse_bbox(bbox)
    )
    return Response(
        snapshot.feature_collection([b.building_id for b in chosen], geometry),
        media_type="application/geo+json",
    )


def _posterior_out(record: PosteriorRecord, dates: tuple[dt.date, ...]) -> PosteriorOut:
    p = record.posterior

    def bounds(g: int) -> tuple[dt.date | None, dt.date | None]:
        if not dates or len(p.probs) != len(dates) + 1:
            return None, None
        return (dates[g - 1] if g >= 1 else None, dates[g] if g < len(dates) else None)

    return PosteriorOut(
        version=record.version,
        status=str(p.status),
        map_gap=p.map_gap,
        confidence=p.confidence,
        n_reviews=p.n_reviews,
        model_version=p.model_version,
        aggregator=record.aggregator,
        created_at=record.created_at,
        gaps=[GapOut(gap=g, last_intact_date=bounds(g)[0], first_damaged_date=bounds(g)[1], probability=q)
              for g, q in enumerate(p.probs)],
    )  # fmt: skip


def _annotation_out(record: AnnotationRecord, map_gap: int | None) -> AnnotationOut:
    a = record.annotation
    admitted = admitted_gaps(a.states)
    return AnnotationOut(
        external_id=a.external_id,
        volunteer_id=a.volunteer_id,
        source=a.source,
        states=[s.label for s in a.states],
        admitted_gaps=[int(g) for g in admitted.nonzero()[0]],
        agrees_with_map=None if map_gap is None or map_gap >= len(admitted) else bool(admitted[map_gap]),
        submitted_at=a.submitted_at,
        received_at=record.received_at,
        revision=record.revision,
        retracted=record.retracted_at is not None,
        retracted_reason=record.retracted_reason,
    )


def _decision_out(record: StoredDecision) -> DecisionOut:
    d = record.decision
    return DecisionOut(
        status=str(d.status), reason=d.reason, flags=list(d.flags), map_gap=d.map_gap, confidence=d.confidence,
        n_reviews=d.n_reviews, n_consistent=d.n_consistent, round_id=record.round_id, decided_at=record.decided_at,
    )  # fmt: skip


def _chips_out(building_id: str, stack: ChipStack | None, n_dates: int) -> list[ChipOut]:
    if stack is None or len(stack.dates) != n_dates:
        return []
    try:
        row = stack.index(building_id)
    except KeyError:
        return []
    sources = stack.manifest.get("sources") or []
    out = []
    for t, date in enumerate(stack.dates):
        sha = sources[t].get("sha256") if t < len(sources) and isinstance(sources[t], dict) else None
        out.append(
            ChipOut(
                date_index=t,
                date=date,
                url=f"/chips/{quote(building_id, safe='')}/{t}.png",
                image_sha256=sha,
                valid_fraction=round(float(stack.valid[row, t]), 4),
            )
        )
    return out


def building_detail(resources: ResourcesDep, record: BuildingRecord, snapshot: Snapshot) -> BuildingDetailOut:
    """One building with every piece of evidence the store and the chip cache hold about it (read fresh)."""
    bid = record.building_id
    try:
        stack: ChipStack | None = resources.chips.stack()
    except CacheError:
        stack = None
    dates = building_dates(record.attributes, record.n_dates, stack)
    posterior = record.posterior
    geometry = snapshot.geometry(bid, "footprint")
    point = snapshot.locations.points.get(bid) if snapshot.locations else None
    known = snapshot.buildings.get(bid)
    ci90 = (
        known.ci90
        if known is not None and posterior and known.posterior_version == posterior.version
        else None
    )
    dated = (
        dated_building(posterior, record.decisions[-1] if record.decisions else None, dates, point, ci90)
        if posterior
        else None
    )
    map_gap = posterior.posterior.map_gap if posterior else None
    return BuildingDetailOut(
        building_id=bid,
        dates=list(dates),
        properties=BuildingProperties(**dated.properties()) if dated else None,
        geometry=geometry.__geo_interface__ if geometry is not None else None,
        coordinates=snapshot.coordinates,  # type: ignore[arg-type]
        posterior=_posterior_out(posterior, dates) if posterior else None,
        annotations=[_annotation_out(r, map_gap) for r in record.annotations],
        decisions=[_decision_out(r) for r in record.decisions],
        chips=_chips_out(bid, stack, record.n_dates),
        chip_cache_fingerprint=stack.fingerprint if stack is not None else None,
    )


@router.get(
    "/{building_id}",
    response_model=BuildingDetailOut,
    summary="One building with its evidence",
    responses={404: ERRORS[404], 422: ERRORS[422]},
)
def get_building(
    resources: ResourcesDep, record: BuildingRecordDep, snapshot: SnapshotDep
) -> BuildingDetailOut:
    """Posterior over gaps, every annotation (pseudonymous volunteers), decisions with reasons, chip links."""
    return building_detail(resources, record, snapshot)


def _verdict_gap(body: VerdictIn, building: KnownBuilding) -> int:
    if body.not_damaged:
        return building.n_dates
    if body.first_damaged_date is not None:
        if body.first_damaged_date not in building.dates:
            span = f"{building.dates[0]} .. {building.dates[-1]}" if building.dates else "unknown dates"
            raise VerdictError(
                "first_damaged_date",
                f"{body.first_damaged_date} is not a date of this building's timeline ({span}); "
                "give one of its image dates",
            )
        return building.dates.index(body.first_damaged_date)
    assert body.gap is not None
    return body.gap


@router.post(
    "/{building_id}/verdict",
    response_model=VerdictOut,
    status_code=201,
    summary="Store a researcher's verdict as gold",
    responses={401: ERRORS[401], 404: ERRORS[404], 409: ERRORS[409], 413: ERRORS[413], 422: ERRORS[422]},
)
async def post_verdict(
    _: TokenDep, resources: ResourcesDep, building: BuildingDep, body: VerdictIn
) -> VerdictOut:
    """The researcher's gap (or not damaged) becomes an expert annotation; the posterior and status follow."""
    try:
        gap = _verdict_gap(body, building)
        verdict = Verdict(gap, body.grade, body.reviewer, body.note, tuple(body.not_visible))
        outcome = await run_in_threadpool(
            apply_verdict, resources.store, building.building_id, verdict, building.dates
        )
    except Exception:
        resources.metrics.verdicts.labels("refused").inc()
        raise
    resources.catalog.invalidate()
    resources.metrics.verdicts.labels("stored").inc()
    return VerdictOut(
        building_id=outcome.building_id,
        external_id=outcome.external_id,
        status=str(outcome.posterior.status),
        map_gap=outcome.posterior.map_gap,
        confidence=outcome.posterior.confidence,
        posterior_version=outcome.posterior_version,
        superseded=list(outcome.superseded),
        reason=outcome.decision.reason,
    )
