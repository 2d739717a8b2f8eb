"""Label Studio -> store of record: pulls and webhooks write annotations, with their cursor, into the store.

One :func:`sync_project` call is one reconciliation pass through ``labeling.queue.LabelStudioQueue``: it pulls
what changed since the cursor saved in the store (everything on the first pass, or with ``full``), maps each
pulled review onto the :class:`active_learning.Annotation` contract (with its comment) and stores it: new
reviews are inserted, edited reviews supersede their earlier content (kept as revisions), reviews deleted inside
a task are retracted (kept, out of aggregation), and anything malformed or unconvertible goes to the quarantine
with its payload. The new cursor is written in the same transaction as the annotations
(:meth:`active_learning.store.Store.ingest`), so a crash repeats a pass instead of losing one, and a restored or
fresh store (no cursor) reads everything again instead of silently skipping it. ``full`` re-reads every task and
lets the store dedupe. Tasks deleted in Label Studio are reported (``deleted_buildings``); the reviews they held
were real reviews and stay.

:func:`store_webhook` is what the webhook route calls: a verified webhook's annotations go straight into the
store (same idempotency as the pull, which reconciles anything a webhook lost), deletions retract, and an
annotation that fails conversion is quarantined with its raw JSON.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from active_learning import Annotation, State
from active_learning.store import IngestReport, QuarantineItem, Store
from labeling import LabelStudioClient, PulledAnnotation, WebhookEvent, parse_webhook
from labeling.queue import FailedAnnotation, LabelStudioQueue, failed_from_webhook

__all__ = [
    "SyncReport",
    "WebhookReport",
    "apply_webhook",
    "cursor_key",
    "store_webhook",
    "sync_project",
    "to_annotation",
]


@dataclass(frozen=True)
class SyncReport:
    """What one pass did (counts of external ids), and the problems Label Studio data had."""

    inserted: int
    updated: int
    unchanged: int
    quarantined: int
    retracted: int
    deleted_buildings: tuple[str, ...]
    problems: tuple[str, ...]
    stale: int = 0
    kept_retracted: int = 0


@dataclass(frozen=True)
class WebhookReport:
    """What one webhook did in the store."""

    action: str
    inserted: int
    updated: int
    unchanged: int
    quarantined: int
    retracted: int
    stale: int = 0
    kept_retracted: int = 0


def to_annotation(pulled: PulledAnnotation) -> Annotation:
    """The store's annotation for one pulled Label Studio review (source ``labelstudio``, comment kept)."""
    return Annotation(
        building_id=pulled.building_id,
        volunteer_id=pulled.volunteer_id,
        source="labelstudio",
        states=tuple(State.parse(s) for s in pulled.states),
        submitted_at=pulled.submitted_at
        if pulled.submitted_at.tzinfo
        else pulled.submitted_at.replace(tzinfo=dt.UTC),
        external_id=pulled.external_id,
        comment=str(getattr(pulled, "comment", "") or ""),
    )


def cursor_key(project_id: int) -> str:
    """The store's key of a project's sync cursor."""
    return f"labelstudio:project:{project_id}"


def _quarantined(failed: FailedAnnotation) -> QuarantineItem:
    return QuarantineItem(
        failed.external_id,
        failed.building_id,
        "conversion",
        f"task {failed.task_id}",
        failed.reason,
        failed.payload,
    )


def sync_project(
    client: LabelStudioClient,
    store: Store,
    project_id: int,
    *,
    secret: bytes,
    full: bool = False,
    round_id: int | None = None,
) -> SyncReport:
    """Pull one project's new, edited and deleted annotations into the store (one reconciliation pass).

    Args:
        client: the API client.
        store: the store of record (holds the cursor).
        project_id: the project.
        secret: key of the volunteer pseudonyms.
        full: read every task again (the store dedupes), keeping what the cursor knows about tasks so deletions
            are still detected.
        round_id: the round the annotations belong to, if any.
    """
    key = cursor_key(project_id)
    cursor = store.cursor(key)
    queue = LabelStudioQueue(client, project_id, secret=secret, public_base_url="")
    pulled = queue.pull(cursor, full=full)
    report: IngestReport = store.ingest(
        [to_annotation(p) for p in pulled.annotations],
        round_id=round_id,
        allow_updates=True,
        retract=pulled.deleted,
        retract_reason="deleted in Label Studio",
        quarantine=[_quarantined(f) for f in pulled.failed],
        cursor=(key, pulled.cursor),
    )
    return SyncReport(
        inserted=len(report.inserted),
        updated=len(report.updated),
        unchanged=len(report.unchanged),
        quarantined=len(report.quarantined),
        retracted=len(report.retracted),
        deleted_buildings=tuple(sorted(set(pulled.gone_tasks.values()))),
        problems=pulled.problems,
        stale=len(report.stale),
        kept_retracted=len(report.kept_retracted),
    )


def apply_webhook(store: Store, event: WebhookEvent, failed: FailedAnnotation | None = None) -> WebhookReport:
    """Write one parsed webhook into the store: annotations (updates allowed), retractions, a failed conversion."""
    report = store.ingest(
        [to_annotation(p) for p in event.annotations],
        allow_updates=True,
        retract=event.deleted,
        retract_reason="deleted in Label Studio (webhook)",
        quarantine=[_quarantined(failed)] if failed is not None else [],
    )
    return WebhookReport(
        action=event.action,
        inserted=len(report.inserted),
        updated=len(report.updated),
        unchanged=len(report.unchanged),
        quarantined=len(report.quarantined),
        retracted=len(report.retracted),
        stale=len(report.stale),
        kept_retracted=len(report.kept_retracted),
    )


def store_webhook(store: Store, body: bytes, *, secret: bytes) -> WebhookReport:
    """Parse a verified webhook body and write it into the store (:func:`apply_webhook`).

    The route verifies the shared secret first; this raises ``labeling.WebhookPayloadError`` for a body that is
    not a webhook (the route answers 400).
    """
    event = parse_webhook(body, secret=secret)
    failed = failed_from_webhook(body, secret=secret) if not event.annotations else None
    return apply_webhook(store, event, failed)
