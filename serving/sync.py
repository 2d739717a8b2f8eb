"""Label Studio -> store of record: the pull writes annotations, with its cursor, into the store.

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

Webhooks reach the store through :mod:`serving.events`, with the same mapping (:func:`to_annotation`,
:func:`quarantine_item`, :data:`RETRACT_REASON`); this pass reconciles anything a lost webhook missed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from active_learning import Annotation, State
from active_learning.store import IngestReport, QuarantineItem, Store
from labeling import LabelStudioClient, PulledAnnotation
from labeling.queue import FailedAnnotation, LabelStudioQueue

__all__ = ["RETRACT_REASON", "SyncReport", "cursor_key", "quarantine_item", "sync_project", "to_annotation"]

RETRACT_REASON = "deleted in Label Studio"
"""Why an annotation deleted inside a Label Studio task is retracted (by the pull or a webhook)."""


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


def quarantine_item(failed: FailedAnnotation) -> QuarantineItem:
    """The store's quarantine entry of an annotation that failed conversion (its raw JSON kept)."""
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
        retract_reason=RETRACT_REASON,
        quarantine=[quarantine_item(f) for f in pulled.failed],
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
