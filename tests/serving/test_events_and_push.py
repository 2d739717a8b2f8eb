"""The webhook -> store step (serving.events) and its worker; buildings -> Label Studio task specs."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from labeling import PulledAnnotation, WebhookEvent
from serving.catalog import Catalog
from serving.chips import ChipSource
from serving.events import EventOutcome, EventQueue, ReceivedWebhook, apply_webhook
from serving.push import POSTERIOR_VERSION, task_specs
from tests.serving.world import DATES, World


def _event(action: str = "ANNOTATION_CREATED", ext: str = "ls:1", building: str = "B000") -> ReceivedWebhook:
    pulled = PulledAnnotation(
        building, "v-0123", ("intact", "intact", "damaged", "damaged", "damaged"),
        dt.datetime(2026, 11, 1, tzinfo=dt.UTC), ext,
    )  # fmt: skip
    return ReceivedWebhook(WebhookEvent(action, 3, annotations=(pulled,)))


def test_apply_webhook_is_idempotent_and_retracts(world: World) -> None:
    assert apply_webhook(world.store, _event()) == EventOutcome("ANNOTATION_CREATED", inserted=1)
    assert apply_webhook(world.store, _event()) == EventOutcome("ANNOTATION_CREATED", unchanged=1)
    assert apply_webhook(world.store, _event(ext="ls:2", building="B404")).quarantined == 1
    deleted = ReceivedWebhook(WebhookEvent("ANNOTATIONS_DELETED", 3, deleted=("ls:1", "ls:99")))
    assert apply_webhook(world.store, deleted) == EventOutcome("ANNOTATIONS_DELETED", retracted=1)
    assert apply_webhook(world.store, deleted).retracted == 0


def test_the_worker_survives_a_failing_event_and_keeps_order(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []
    done: list[tuple[str, bool]] = []

    def apply(received: ReceivedWebhook) -> EventOutcome:
        if received.event.annotations[0].external_id == "ls:bad":
            raise RuntimeError("the store is on fire")
        seen.append(received.event.annotations[0].external_id)
        return EventOutcome(received.event.action, inserted=1)

    queue = EventQueue(apply, lambda r, o: done.append((r.event.annotations[0].external_id, o is not None)))
    with caplog.at_level(logging.ERROR):
        for ext in ("ls:1", "ls:bad", "ls:2", "ls:3"):
            queue.submit(_event(ext=ext))
        queue.join()
    queue.stop()
    assert seen == ["ls:1", "ls:2", "ls:3"]
    assert done == [("ls:1", True), ("ls:bad", False), ("ls:2", True), ("ls:3", True)]
    assert "not stored: unexpected RuntimeError" in caplog.text and "on fire" not in caplog.text


def test_task_specs_carry_the_posterior_and_skip_what_cannot_be_pushed(world: World) -> None:
    snapshot = Catalog(world.store, ChipSource(world.cache)).snapshot()
    specs, version, problems = task_specs(world.store, snapshot, ["B000", "B003", "B005", "NOPE", "B000"])
    assert version == POSTERIOR_VERSION and [s.building_id for s in specs] == ["B000", "B003"]
    b000 = specs[0]
    assert b000.dates == tuple(d.isoformat() for d in DATES)
    assert b000.predicted_states == ("intact", "intact", "intact", "destroyed", "destroyed")
    assert b000.score == pytest.approx(0.96)
    assert specs[1].predicted_states == ("intact",) * 5  # B003: not damaged
    assert [p.split(":")[0] for p in problems] == ["B005", "NOPE"]
    assert "crowd aggregate" in problems[0] and "not in the store" in problems[1]
