"""A Label Studio project as a campaign's review queue: push buildings, pull answers since a cursor, withdraw.

:class:`LabelStudioQueue` uses only :class:`labeling.client.LabelStudioClient`'s public methods. One task per
building: pushing a building already in the project is a no-op (``LabelStudioClient.push`` lists the project
first), so pushing twice, or again after a crash, never makes a second task. The project's overlap
(``maximum_annotations``) bounds how many volunteers may review one task; the campaign keeps a building in the
queue until it is settled.

Pulls are incremental: the cursor is :class:`labeling.client.SyncState` as JSON, handed back with every pull
and stored by the caller with the annotations it came with. On top of ``LabelStudioClient.pull`` the queue:

- tells apart *tasks that vanished* (deleted by us when withdrawing, or by a volunteer or an admin:
  ``gone_tasks``) from *annotations deleted inside a task that still exists* (``deleted``, to retract): the
  reviews a vanished task held were real reviews, already pulled, and are not retracted with it;
- returns the annotations that could not be converted (skipped tasks, results without a usable state, bad time
  stamps) as :class:`FailedAnnotation` with their raw JSON (fetched through the project export, only when some
  failed), so the caller can quarantine them instead of dropping them.

Withdrawal deletes the building's task. Label Studio Community has no per-task pause and its API cannot take a
task out of the volunteers' stream otherwise (``is_labeled`` is computed from the overlap; the client's public
API has no task update), and deletion is what stops volunteers from being served a settled building. An answer
submitted in the moment between the round's pull and the deletion is lost in Label Studio but not to the
campaign when webhooks are on: the webhook writes it into the store first.

Label Studio unreachable or overloaded (after the client's own retries) raises :class:`QueueUnavailableError`,
whose ``transient`` attribute tells the campaign loop to wait and retry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from labeling.client import LabelStudioClient, SyncState
from labeling.convert import PulledAnnotation, TaskSpec, convert_annotation, external_id
from labeling.errors import LabelingError, LabelStudioAPIError

__all__ = [
    "FailedAnnotation",
    "LabelStudioQueue",
    "QueuePull",
    "QueueRequest",
    "QueueUnavailableError",
    "failed_from_webhook",
]

_TRANSIENT = frozenset({0, 429, 502, 503, 504})


class QueueUnavailableError(LabelingError):
    """Label Studio is down or overloaded; ``transient`` tells callers to retry later."""

    transient = True


class QueueRequest(Protocol):
    """What the queue needs of a review request (``active_learning.labelers.ReviewRequest`` has it)."""

    building_id: str
    dates: Sequence[str]
    priority: float


@dataclass(frozen=True)
class FailedAnnotation:
    """An annotation that could not be converted, with its raw JSON.

    Attributes:
        external_id: ``ls:<annotation id>``.
        building_id: the task's building.
        task_id: the Label Studio task.
        reason: why it could not be used (the conversion's problem lines).
        payload: the raw annotation and the task's building id and dates.
    """

    external_id: str
    building_id: str
    task_id: int
    reason: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QueuePull:
    """One pull.

    Attributes:
        annotations: new or edited annotations since the cursor.
        deleted: external ids of annotations deleted inside tasks that still exist (to retract).
        failed: annotations that could not be converted, with their raw JSON.
        gone_tasks: task id -> building id of tasks that vanished since the cursor.
        cursor: the new cursor (:class:`SyncState` JSON).
        problems: every problem line of the conversion.
    """

    annotations: tuple[PulledAnnotation, ...]
    deleted: tuple[str, ...]
    failed: tuple[FailedAnnotation, ...]
    gone_tasks: Mapping[int, str]
    cursor: str
    problems: tuple[str, ...] = ()


class LabelStudioQueue:
    """One Label Studio project as a review queue.

    Args:
        client: the API client.
        project_id: the campaign's project.
        secret: key of the volunteer pseudonyms.
        public_base_url: where Label Studio's browser fetches chips.
        model_version: the tasks' model version tag.
    """

    name = "labelstudio"

    def __init__(
        self,
        client: LabelStudioClient,
        project_id: int,
        *,
        secret: bytes,
        public_base_url: str,
        model_version: str = "campaign",
    ) -> None:
        self.client = client
        self.project_id = project_id
        self.secret = secret
        self.public_base_url = public_base_url
        self.model_version = model_version

    def _guard(self, exc: LabelStudioAPIError) -> None:
        if exc.status in _TRANSIENT:
            raise QueueUnavailableError(f"Label Studio project {self.project_id}: {exc}") from exc
        raise exc

    def push(self, requests: Iterable[QueueRequest]) -> dict[str, int]:
        """Create a task for every building not yet in the project; building id -> its task id."""
        specs: dict[str, TaskSpec] = {}
        for r in requests:
            specs.setdefault(r.building_id, TaskSpec(r.building_id, tuple(r.dates)))
        try:
            result = self.client.push(
                self.project_id,
                list(specs.values()),
                public_base_url=self.public_base_url,
                model_version=self.model_version,
            )
        except LabelStudioAPIError as exc:
            self._guard(exc)
        return {**dict(result.existing), **dict(result.created)}

    def pull(self, cursor: str | None, *, full: bool = False) -> QueuePull:
        """Everything that changed since ``cursor`` (module docstring).

        Args:
            cursor: the previous pull's cursor, or None for everything.
            full: read every task again and return every annotation (the caller dedupes), keeping the task
                bookkeeping of the cursor so that deletions are still seen.
        """
        prev = SyncState.from_json(cursor) if cursor else SyncState(self.project_id)
        if prev.project_id != self.project_id:
            raise LabelingError(
                f"the cursor belongs to project {prev.project_id}, not {self.project_id}; the campaign was set up "
                "with another project"
            )
        asked = replace(prev, seen={}, cursor="") if full else prev
        try:
            result = self.client.pull(self.project_id, secret=self.secret, state=asked, full=full)
        except LabelStudioAPIError as exc:
            self._guard(exc)
        state = result.state
        gone = {tid: b for tid, b in prev.tasks.items() if tid not in state.tasks}
        held = {external_id(aid) for tid in gone for aid in prev.task_annotations.get(tid, ())}
        deleted = tuple(e for e in result.deleted if e not in held)
        pulled = {a.external_id for a in result.annotations}
        failed_ids = [
            aid
            for aid, version in state.seen.items()
            if asked.seen.get(aid) != version and external_id(aid) not in pulled
        ]
        failed = self._failed(failed_ids, result.problems, state) if failed_ids else ()
        return QueuePull(result.annotations, deleted, failed, gone, state.to_json(), result.problems)

    def _failed(
        self, ids: Sequence[int], problems: Sequence[str], state: SyncState
    ) -> tuple[FailedAnnotation, ...]:
        """The raw JSON of annotations that failed conversion (one export call)."""
        try:
            tasks = self.client.export_tasks(self.project_id)
        except LabelStudioAPIError as exc:
            self._guard(exc)
        wanted = set(ids)
        task_of = {aid: tid for tid, aids in state.task_annotations.items() for aid in aids}
        raw: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
        for task in tasks:
            for ann in task.get("annotations") or []:
                if ann.get("id") in wanted:
                    raw[int(ann["id"])] = (dict(ann), dict(task.get("data") or {}))
        out = []
        for aid in ids:
            ann, data = raw.get(aid, ({"id": aid}, {}))
            label = f"annotation {aid} "
            reason = "; ".join(p for p in problems if p.startswith(label)) or "could not be converted"
            tid = int(task_of.get(aid, ann.get("task") or 0) or 0)
            building = str(data.get("building_id") or state.tasks.get(tid, ""))
            out.append(
                FailedAnnotation(external_id(aid), building, tid, reason, _payload(ann, data, building))
            )
        return tuple(out)

    def withdraw(self, building_ids: Iterable[str]) -> None:
        """Delete the tasks of these buildings (module docstring); buildings without a task are skipped."""
        wanted = set(building_ids)
        try:
            inventory = self.client.task_inventory(self.project_id)
            for task_id, (building, _) in inventory.items():
                if building in wanted:
                    try:
                        self.client.delete_task(task_id)
                    except LabelStudioAPIError as exc:
                        if exc.status != 404:  # already gone
                            raise
        except LabelStudioAPIError as exc:
            self._guard(exc)


def _payload(annotation: dict[str, Any], task_data: dict[str, Any], building: str) -> dict[str, Any]:
    """What is kept of an unconvertible annotation: its own fields (no user names or emails) and the task's
    building and dates."""
    keep = ("id", "task", "completed_by", "result", "was_cancelled", "created_at", "updated_at", "lead_time")
    by = annotation.get("completed_by")
    return {
        "annotation": {
            **{k: annotation.get(k) for k in keep if k in annotation and k != "completed_by"},
            "completed_by": by.get("id") if isinstance(by, dict) else by,
        },
        "building_id": building,
        "dates": [str(d.get("date", "")) for d in task_data.get("timeline") or [] if isinstance(d, dict)],
    }


def failed_from_webhook(body: bytes, *, secret: bytes) -> FailedAnnotation | None:
    """The annotation of an ANNOTATION_CREATED / ANNOTATION_UPDATED webhook that fails conversion, with its raw
    JSON; None when the body holds no annotation or it converts (``labeling.parse_webhook`` handles those)."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict) or payload.get("action") not in (
        "ANNOTATION_CREATED",
        "ANNOTATION_UPDATED",
    ):
        return None
    annotation, task = payload.get("annotation"), payload.get("task")
    if (
        not isinstance(annotation, dict)
        or not isinstance(task, dict)
        or not isinstance(task.get("data"), dict)
    ):
        return None
    tid = task.get("id") if isinstance(task.get("id"), int) else 0
    converted = convert_annotation(annotation, task["data"], secret=secret, task_id=int(tid or 0))
    if converted.annotation is not None:
        return None
    aid = annotation.get("id")
    building = str(task["data"].get("building_id") or "")
    return FailedAnnotation(
        external_id(aid) if isinstance(aid, int) else "",
        building,
        int(tid or 0),
        "; ".join(converted.problems) or "could not be converted",
        _payload(annotation, task["data"], building),
    )
