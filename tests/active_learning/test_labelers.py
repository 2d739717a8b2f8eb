"""The labeler protocol: loading by import path, the queue adapter, and the simulated pool as a platform."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from active_learning.errors import LabelerError, LabelerUnavailableError
from active_learning.labelers import Labeler, QueueLabeler, ReviewRequest, load_labeler
from active_learning.schema import State
from tests.active_learning.campaign_kit import DATES, pool_labeler, truths

ISO = tuple(d.isoformat() for d in DATES)


def factory(scenario_dir: Path, seed: int) -> Labeler:
    """A labeler factory named by import path in the tests below."""
    return pool_labeler(truths(10), seed=seed)


def not_a_labeler(scenario_dir: Path, seed: int) -> object:
    return object()


def takes_nothing() -> Labeler:
    raise AssertionError("never called")


def test_labelers_are_named_by_import_path() -> None:
    labeler = load_labeler("tests.active_learning.test_labelers:factory", None, 3)
    assert isinstance(labeler, Labeler) and labeler.name == "simulated"
    for spec, message in [
        ("nowhere", "neither 'simulated' nor"),
        ("tests.nowhere:factory", "cannot import"),
        ("tests.active_learning.test_labelers:missing", "no callable 'missing'"),
        ("tests.active_learning.test_labelers:not_a_labeler", "without"),
        (
            "tests.active_learning.test_labelers:takes_nothing",
            "must take \\(scenario_dir: Path, seed: int\\)",
        ),
    ]:
        with pytest.raises(LabelerError, match=message):
            load_labeler(spec, None, 3)
    with pytest.raises(LabelerError, match="--scenario"):
        load_labeler("simulated", None, 3)


def test_the_simulated_pool_answers_the_same_request_the_same_way_in_every_instance(tmp_path: Path) -> None:
    ts = truths(10)
    requests = [ReviewRequest(f"{t.building_id}#{k}", t.building_id, ISO) for t in ts for k in (1, 2)]
    one, two = pool_labeler(ts), pool_labeler(ts, state_path=tmp_path / "platform.json")
    assert (
        one.push(requests).task_refs == two.push(requests + requests[:3]).task_refs
    )  # idempotent on the key
    a, b = one.pull(None), two.pull(None)
    assert [r.annotation for r in a.reviews] == [r.annotation for r in b.reviews]
    assert len(a.reviews) == 20 and a.cursor == "20" and one.pull(a.cursor).reviews == ()
    reviewers = {(r.annotation.building_id, r.annotation.volunteer_id) for r in a.reviews}
    assert len(reviewers) == 20  # two different volunteers per building: independent reviews
    two.withdraw([ts[0].building_id])
    two.push([ReviewRequest(f"{ts[0].building_id}#3", ts[0].building_id, ISO)])
    two.withdraw([ts[0].building_id])
    assert two.pull(b.cursor).reviews == ()  # withdrawn before anyone answered
    reopened = pool_labeler(ts, state_path=tmp_path / "platform.json")  # the platform outlives the process
    assert reopened.tasks() == two.tasks() and reopened.answered() == two.answered()


@dataclass
class Pulled:
    building_id: str
    volunteer_id: str
    states: tuple[str, ...]
    submitted_at: dt.datetime
    external_id: str
    task_id: int
    comment: str = ""


@dataclass
class Failed:
    external_id: str
    building_id: str
    task_id: int
    reason: str
    payload: dict[str, Any]


@dataclass
class Result:
    annotations: list[Pulled]
    deleted: tuple[str, ...]
    failed: list[Failed]
    gone_tasks: dict[int, str]
    cursor: str


class Down(Exception):
    transient = True


@dataclass
class Queue:
    """A platform queue as labeling.queue.LabelStudioQueue presents it (duck-typed)."""

    result: Result
    down: int = 0
    pushed: list[str] = field(default_factory=list)

    def push(self, requests: list[Any]) -> dict[str, int]:
        self.pushed += [r.building_id for r in requests]
        return {b: 40 + i for i, b in enumerate(dict.fromkeys(self.pushed))}

    def pull(self, cursor: str | None) -> Result:
        if self.down:
            self.down -= 1
            raise Down("connection refused")
        return self.result

    def withdraw(self, building_ids: list[str]) -> None:
        return None


def test_the_queue_adapter_reads_platform_records_by_their_attributes() -> None:
    when = dt.datetime(2024, 5, 1)  # naive: read as UTC
    result = Result(
        [Pulled("A", "v-1", ("intact", "destroyed"), when, "ls:1", 40, "roof gone"),
         Pulled("A", "v-2", ("intact", "rubble"), when, "ls:2", 40)],
        ("ls:0",), [Failed("ls:3", "A", 40, "skipped", {"annotation": {"id": 3}})], {41: "B"}, '{"c": 1}',
    )  # fmt: skip
    queue = Queue(result, down=1)
    labeler = QueueLabeler(queue)
    receipt = labeler.push([ReviewRequest("A#1", "A", ISO), ReviewRequest("A#2", "A", ISO)])
    assert receipt.task_refs == {"A#1": "40", "A#2": "40"}  # one task per building
    with pytest.raises(LabelerUnavailableError, match="connection refused"):
        labeler.pull(None)
    batch = labeler.pull(None)
    (review,) = batch.reviews
    assert review.annotation.states == (State.INTACT, State.DESTROYED) and review.task_ref == "40"
    assert review.annotation.comment == "roof gone" and review.annotation.submitted_at.tzinfo is not None
    assert [f.external_id for f in batch.failed] == ["ls:3", "ls:2"]  # an unknown state is a failure, kept
    assert batch.retracted == ("ls:0",) and batch.gone == {"41": "B"} and batch.cursor == '{"c": 1}'
    with pytest.raises(LabelerError, match=r"no push\(\) method"):
        QueueLabeler(object())
