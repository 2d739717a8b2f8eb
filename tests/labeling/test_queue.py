"""The Label Studio review queue over the client's public methods: vanished tasks, failed conversions, outages.

The client is replaced by a small fake with the same public methods (push, pull, export_tasks, task_inventory,
delete_task), so these tests hold whatever transport the client uses; the real server is exercised in
tests/labeling/test_queue_integration.py.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, replace
from typing import Any

import pytest

from labeling.client import PullResult, PushResult, SyncState
from labeling.convert import PulledAnnotation, external_id
from labeling.errors import AuthenticationError, LabelStudioAPIError
from labeling.queue import LabelStudioQueue, QueueUnavailableError, failed_from_webhook

WHEN = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


@dataclass
class Request:
    building_id: str
    dates: tuple[str, ...]
    priority: float = 0.5


class FakeClient:
    """What LabelStudioQueue needs of LabelStudioClient, with a scripted pull."""

    def __init__(self) -> None:
        self.tasks: dict[int, str] = {}
        self.deleted: list[int] = []
        self.pull_results: list[PullResult] = []
        self.exported: list[dict[str, Any]] = []
        self.fail_with: LabelStudioAPIError | None = None

    def push(self, project_id: int, specs: list[Any], **_: Any) -> PushResult:
        if self.fail_with is not None:
            raise self.fail_with
        existing = {b: t for t, b in self.tasks.items() if b in {s.building_id for s in specs}}
        created = {}
        for s in specs:
            if s.building_id not in existing:
                tid = 100 + len(self.tasks)
                self.tasks[tid] = s.building_id
                created[s.building_id] = tid
        return PushResult(created, existing, 0, SyncState(project_id, dict(self.tasks)))

    def pull(
        self, project_id: int, *, secret: bytes, state: SyncState | None = None, full: bool = False
    ) -> PullResult:
        if self.fail_with is not None:
            raise self.fail_with
        return self.pull_results.pop(0)

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        return self.exported

    def task_inventory(self, project_id: int) -> dict[int, tuple[str, str]]:
        return {t: (b, "") for t, b in self.tasks.items()}

    def delete_task(self, task_id: int) -> None:
        self.deleted.append(task_id)
        self.tasks.pop(task_id, None)


def _pulled(aid: int, task: int, building: str) -> PulledAnnotation:
    return PulledAnnotation(building, "v-1", ("intact", "damaged"), WHEN, external_id(aid), "roof gone", task)


def test_push_is_idempotent_by_building_and_withdraw_deletes_the_task() -> None:
    client = FakeClient()
    queue = LabelStudioQueue(client, 7, secret=b"k", public_base_url="http://x")  # type: ignore[arg-type]
    first = queue.push(
        [Request("A", ("2017-01-01", "2017-02-01")), Request("A", ("2017-01-01", "2017-02-01"))]
    )
    again = queue.push(
        [Request("A", ("2017-01-01", "2017-02-01")), Request("B", ("2017-01-01", "2017-02-01"))]
    )
    assert first == {"A": 100} and again == {"A": 100, "B": 101} and len(client.tasks) == 2
    queue.withdraw(["A", "Z"])
    assert client.deleted == [100] and set(client.tasks.values()) == {"B"}


def test_a_vanished_task_is_reported_and_its_reviews_are_not_retracted() -> None:
    client = FakeClient()
    queue = LabelStudioQueue(client, 7, secret=b"k", public_base_url="http://x")  # type: ignore[arg-type]
    before = SyncState(7, {100: "A", 101: "B"}, {1: "t1", 2: "t1", 3: "t1"}, {100: (1, 2), 101: (3,)}, "c1")
    after = SyncState(
        7, {101: "B"}, {3: "t1"}, {101: ()}, "c2"
    )  # task 100 deleted; annotation 3 deleted in B
    client.pull_results.append(
        PullResult((), (external_id(1), external_id(2), external_id(3)), ("A",), (), after, 1)
    )
    pulled = queue.pull(before.to_json())
    assert pulled.gone_tasks == {100: "A"}
    assert pulled.deleted == (external_id(3),)  # only the annotation deleted inside a task that still exists
    assert SyncState.from_json(pulled.cursor).cursor == "c2"


def test_an_annotation_that_fails_conversion_comes_back_with_its_raw_json() -> None:
    client = FakeClient()
    queue = LabelStudioQueue(client, 7, secret=b"k", public_base_url="http://x")  # type: ignore[arg-type]
    after = SyncState(7, {100: "A"}, {5: "t5", 6: "t6"}, {100: (5, 6)}, "c1")
    problem = "annotation 6 (task 100): skipped by the volunteer (was_cancelled); not evidence"
    client.pull_results.append(PullResult((_pulled(5, 100, "A"),), (), (), (problem,), after, 1))
    client.exported = [{"id": 100, "data": {"building_id": "A", "timeline": [{"date": "2017-01-01"}]},
                        "annotations": [{"id": 6, "task": 100, "was_cancelled": True, "result": [],
                                         "completed_by": {"id": 3, "email": "x@y.z"}}]}]  # fmt: skip
    pulled = queue.pull(None)
    assert [a.external_id for a in pulled.annotations] == ["ls:5"] and pulled.annotations[
        0
    ].comment == "roof gone"
    (failed,) = pulled.failed
    assert failed.external_id == "ls:6" and failed.building_id == "A" and "was_cancelled" in failed.reason
    assert failed.payload["annotation"]["was_cancelled"] is True
    assert failed.payload["annotation"]["completed_by"] == 3  # the user id, never the email
    assert "x@y.z" not in json.dumps(failed.payload)


def test_label_studio_down_is_transient_and_a_refused_token_is_not() -> None:
    client = FakeClient()
    queue = LabelStudioQueue(client, 7, secret=b"k", public_base_url="http://x")  # type: ignore[arg-type]
    client.fail_with = LabelStudioAPIError("unreachable after 4 attempts", status=0)
    with pytest.raises(QueueUnavailableError) as down:
        queue.pull(None)
    assert down.value.transient is True
    client.fail_with = LabelStudioAPIError("HTTP 503", status=503)
    with pytest.raises(QueueUnavailableError):
        queue.push([Request("A", ("2017-01-01",))])
    client.fail_with = AuthenticationError("token refused", status=401)
    with pytest.raises(AuthenticationError):
        queue.pull(None)


def test_a_webhook_annotation_that_fails_conversion_is_kept_with_its_payload() -> None:
    body = {"action": "ANNOTATION_CREATED", "annotation": {"id": 9, "completed_by": 2, "result": "not a list"},
            "task": {"id": 40, "data": {"building_id": "A", "timeline": [{"date": "2017-01-01"}]}}}  # fmt: skip
    failed = failed_from_webhook(json.dumps(body).encode(), secret=b"k")
    assert failed is not None and failed.external_id == "ls:9" and failed.task_id == 40
    assert "expected a list" in failed.reason and failed.payload["annotation"]["result"] == "not a list"
    fine = replace_result(body, [{"from_name": "state_0", "to_name": "image_0", "type": "choices",
                                  "value": {"choices": ["intact"]}}])  # fmt: skip
    assert failed_from_webhook(json.dumps(fine).encode(), secret=b"k") is None
    assert failed_from_webhook(b"not json", secret=b"k") is None


def replace_result(body: dict[str, Any], result: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        **body,
        "annotation": {**body["annotation"], "result": result, "updated_at": "2024-05-01T00:00:00Z"},
    }


def test_state_round_trip_keeps_the_task_bookkeeping() -> None:
    state = SyncState(3, {1: "A"}, {9: "t"}, {1: (9,)}, "c")
    assert SyncState.from_json(replace(state).to_json()) == state
