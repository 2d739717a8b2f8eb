"""Label Studio -> store of record: pull annotations, keep them as evidence, persist the sync state.

One :func:`sync_project` call is one reconciliation pass. It pulls what changed since the saved
:class:`labeling.SyncState` (or everything on the first pass, or with ``full``), maps each
:class:`labeling.PulledAnnotation` onto the :class:`active_learning.Annotation` contract, and stores it:
new reviews are inserted, edited reviews supersede their earlier content (kept as revisions), reviews deleted
in Label Studio are retracted (kept, out of aggregation), and anything malformed goes to the quarantine with
its reason. The sync state is written only after the store has committed, so a crash repeats a pass instead
of losing one; the store's idempotency on external ids makes repeating harmless. Webhooks only make this
faster: without Redis Label Studio sends each webhook once, so this pass is what guarantees completeness.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from active_learning import Annotation, State
from active_learning.store import Store
from labeling import LabelStudioClient, PulledAnnotation, SyncState

__all__ = ["SyncReport", "load_sync_state", "sync_project", "to_annotation"]


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
    tasks_fetched: int


def to_annotation(pulled: PulledAnnotation) -> Annotation:
    """The store's annotation for one pulled Label Studio review (source ``labelstudio``)."""
    return Annotation(
        building_id=pulled.building_id,
        volunteer_id=pulled.volunteer_id,
        source="labelstudio",
        states=tuple(State.parse(s) for s in pulled.states),
        submitted_at=pulled.submitted_at
        if pulled.submitted_at.tzinfo
        else pulled.submitted_at.replace(tzinfo=dt.UTC),
        external_id=pulled.external_id,
    )


def state_path(work_dir: Path, project_id: int) -> Path:
    """Where the sync state of one project is kept."""
    return work_dir / "labelstudio" / f"sync-project-{project_id}.json"


def load_sync_state(path: Path, project_id: int) -> SyncState:
    """The saved state, or an empty one (first pass) when none is saved."""
    if not path.exists():
        return SyncState(project_id)
    state = SyncState.from_json(path.read_text())
    if state.project_id != project_id:
        raise ValueError(f"{path}: holds the sync state of project {state.project_id}, not {project_id}")
    return state


def sync_project(
    client: LabelStudioClient,
    store: Store,
    project_id: int,
    *,
    secret: bytes,
    state_file: Path,
    full: bool = False,
    round_id: int | None = None,
) -> SyncReport:
    """Pull one project's new, edited and deleted annotations into the store (one reconciliation pass)."""
    state = load_sync_state(state_file, project_id)
    pulled = client.pull(project_id, secret=secret, state=state, full=full)
    report = store.add_annotations(
        [to_annotation(p) for p in pulled.annotations], round_id, allow_updates=True
    )
    retracted = store.retract(pulled.deleted, "deleted in Label Studio")
    state_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = state_file.with_suffix(".tmp")
    tmp.write_text(pulled.state.to_json())
    tmp.replace(state_file)
    return SyncReport(
        inserted=len(report.inserted),
        updated=len(report.updated),
        unchanged=len(report.unchanged),
        quarantined=len(report.quarantined),
        retracted=len(retracted),
        deleted_buildings=pulled.deleted_buildings,
        problems=pulled.problems,
        tasks_fetched=pulled.tasks_fetched,
    )
