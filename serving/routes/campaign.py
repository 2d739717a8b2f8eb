"""``/api/queue``, ``/api/campaign``, ``/api/timeline``: what waits for whom, how the campaign went, when."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from active_learning.posterior import Status
from active_learning.store import Store
from serving.catalog import DatedBuilding, Snapshot
from serving.dependencies import SnapshotDep, StoreDep
from serving.routes.responses import ERRORS
from serving.schemas import (
    AuditOut,
    CampaignOut,
    CampaignRunOut,
    QueueItemOut,
    QueueOut,
    RoundOut,
    TimelineOut,
    WeekOut,
)
from serving.timeline import BAND, destruction_timeline

__all__ = ["campaign_summary", "review_queue", "router", "weekly_timeline"]

router = APIRouter(prefix="/api", tags=["campaign"])

_FLAG_ORDER = {"contested": 0, "model_conflict": 1, "low_reliability": 2}
_OPEN = {str(Status.UNLABELLED), str(Status.QUEUED), str(Status.IN_REVIEW)}


def review_queue(snapshot: Snapshot, kind: Literal["review", "labeling"]) -> list[DatedBuilding]:
    """Buildings waiting, most urgent first.

    ``review``: flagged buildings no researcher has judged yet, contested first, then model conflicts, then low
    reliability, least confident first within each. ``labeling``: buildings still open to volunteers
    (unlabelled, queued, in review), least confident first.
    """
    if kind == "review":
        flagged = [b for b in snapshot.buildings.values() if b.flags and b.status != str(Status.EXPERT)]
        return sorted(
            flagged,
            key=lambda b: (
                min(_FLAG_ORDER.get(f, 9) for f in b.flags),
                b.posterior.confidence,
                b.building_id,
            ),
        )
    open_ = [b for b in snapshot.buildings.values() if b.status in _OPEN]
    return sorted(open_, key=lambda b: (b.posterior.confidence, b.building_id))


@router.get(
    "/queue", response_model=QueueOut, summary="Buildings waiting for review", responses={422: ERRORS[422]}
)
def get_queue(
    snapshot: SnapshotDep,
    kind: Annotated[
        Literal["review", "labeling"],
        Query(description="review: flagged for researchers; labeling: open to volunteers"),
    ] = "review",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> QueueOut:
    """The researchers' review queue (default) or the volunteers' labeling queue."""
    items = review_queue(snapshot, kind)
    return QueueOut(
        kind=kind,
        total=len(items),
        items=[
            QueueItemOut(
                building_id=b.building_id,
                status=b.status,
                flags=list(b.flags),
                map_gap=b.posterior.map_gap,
                confidence=b.posterior.confidence,
                reviews=b.posterior.n_reviews,
                reason=b.reason,
            )  # fmt: skip
            for b in items[:limit]
        ],
    )


def _audit(store: Store, snapshot: Snapshot) -> AuditOut:
    """The system's last date before each researcher verdict, compared with the verdict."""
    exact = within = n = 0
    for b in snapshot.buildings.values():
        if b.status != str(Status.EXPERT):
            continue
        history = store.posterior_history(b.building_id)
        before = [p for _, p in history if p.status != Status.EXPERT]
        if not before:
            continue
        n += 1
        gap = before[-1].map_gap
        exact += gap == b.posterior.map_gap
        within += abs(gap - b.posterior.map_gap) <= 1
    return AuditOut(
        buildings=n,
        exact=exact,
        within_one=within,
        accuracy=exact / n if n else None,
        within_one_accuracy=within / n if n else None,
    )


def _campaign_run(store: Store, name: str) -> CampaignRunOut:
    """One campaign as the campaign tables record it (``active_learning.loop.campaign_status``)."""
    from active_learning.loop import campaign_status  # the campaign loop's modules load on first use only

    status = campaign_status(store, name)
    events = Counter(e.kind for e in store.model_events(name))
    return CampaignRunOut(
        name=status.name,
        mode=status.mode,
        labeler=status.labeler,
        rounds=status.rounds,
        open_round=status.open_round[0] if status.open_round else None,
        open_stage=status.open_round[1] if status.open_round else None,
        requests=dict(sorted(status.requests.items())),
        reviews_answered=status.requests.get("answered", 0),
        model_settled=status.model_settled,
        champion=status.champion,
        model_events=dict(sorted(events.items())),
        audit=status.audit,
    )


def _crowd_counts(store: Store, snapshot: Snapshot) -> dict[str, Any]:
    """What the snapshot decides: annotations spent, status counts, the researchers' audit."""
    log = store.annotation_log()
    sources = Counter(source for _, _, _, source, _ in log)
    statuses = Counter(b.status for b in snapshot.buildings.values())
    return {
        "annotations_spent": sum(n for s, n in sources.items() if s != "expert"),
        "expert_verdicts": sources.get("expert", 0),
        "buildings": len(snapshot.buildings),
        "statuses": dict(sorted(statuses.items())),
        "settled": statuses.get(str(Status.SETTLED), 0),
        "contested": statuses.get(str(Status.CONTESTED), 0),
        "flagged": len(review_queue(snapshot, "review")),
        "audit": _audit(store, snapshot),
    }


def campaign_summary(store: Store, snapshot: Snapshot) -> CampaignOut:
    """Rounds, the campaigns' progress, annotations spent, status counts and the audits of the system's dates.

    The counts derived from the snapshot are computed once per snapshot; rounds and the campaign tables are read
    on every call, because a round's stage, its requests and model events change without changing the store's
    change stamp.
    """
    return CampaignOut(
        rounds=[
            RoundOut(
                id=r.id,
                kind=r.kind,
                campaign=r.campaign,
                stage=r.stage,
                model_version=r.model_version,
                note=r.note,
                started_at=r.started_at,
                finished_at=r.finished_at,
            )
            for r in store.rounds()
        ],
        campaigns=[_campaign_run(store, c.name) for c in store.campaigns()],
        **snapshot.memo("campaign", lambda: _crowd_counts(store, snapshot)),
    )


@router.get("/campaign", response_model=CampaignOut, summary="How the campaign stands")
def get_campaign(store: StoreDep, snapshot: SnapshotDep) -> CampaignOut:
    """Rounds, each campaign's progress (requests, models, audit), annotations spent, settled and contested
    counts, and the researchers' audit of the system's dates."""
    return campaign_summary(store, snapshot)


def weekly_timeline(snapshot: Snapshot) -> TimelineOut:
    """Buildings destroyed per week with the 90% band (:mod:`serving.timeline`)."""
    timeline = destruction_timeline(snapshot.timeline_groups())
    return TimelineOut(
        band=BAND,
        draws=timeline.draws,
        buildings=timeline.buildings,
        before_first_image=round(timeline.before_first, 3),
        not_damaged=round(timeline.not_damaged, 3),
        weeks=[
            WeekOut(week_start=w, expected=round(float(e), 3), lo=float(lo), hi=float(hi))
            for w, e, lo, hi in zip(
                timeline.week_starts, timeline.expected, timeline.lo, timeline.hi, strict=True
            )
        ],
    )


@router.get("/timeline", response_model=TimelineOut, summary="Buildings destroyed per week")
def get_timeline(snapshot: SnapshotDep) -> TimelineOut:
    """Expected buildings destroyed per week from every posterior, with a 90% band."""
    return snapshot.memo("timeline", lambda: weekly_timeline(snapshot))
