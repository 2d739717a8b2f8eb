"""Label Studio webhooks (``/webhooks/labelstudio`` and the ML backend's ``/webhook``) into the store.

Verified by the shared secret, answered before the store write, stored idempotently (created, updated,
deleted), malformed or unauthenticated ones refused and logged without their content.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from active_learning.schema import State
from serving.app import create_app
from tests.serving.world import SECRET, World, webhook_body

HOOKS = ("/webhooks/labelstudio", "/webhook")
OK = {"X-Striketracker-Secret": SECRET}


def _post(client: TestClient, path: str, body: dict[str, object], headers: dict[str, str] = OK):  # type: ignore[no-untyped-def]
    return client.post(path, content=json.dumps(body).encode(), headers=headers)


def _stored(client: TestClient, world: World) -> list[str]:
    client.app.state.resources.events.join()  # type: ignore[attr-defined]
    return sorted(a.external_id for a in world.store.annotations() if a.external_id.startswith("ls:"))


@pytest.mark.parametrize("path", HOOKS)
def test_created_updated_deleted_reach_the_store_idempotently(
    client: TestClient, world: World, path: str
) -> None:
    r = _post(client, path, webhook_body("ANNOTATION_CREATED", 69))
    assert r.status_code == 200 and r.json() == {
        "action": "ANNOTATION_CREATED", "annotations": 1, "deleted": 0, "queued": True,
    }  # fmt: skip
    assert _stored(client, world) == ["ls:69"]
    (stored,) = [a for a in world.store.annotations() if a.external_id == "ls:69"]
    assert stored.building_id == "B000" and stored.source == "labelstudio"
    assert stored.volunteer_id.startswith("v-") and stored.states[2] == State.DESTROYED

    assert _post(client, path, webhook_body("ANNOTATION_CREATED", 69)).status_code == 200  # delivered twice
    assert _stored(client, world) == ["ls:69"] and world.store.quarantine() == []

    edited = webhook_body("ANNOTATION_UPDATED", 69, states=("intact",) * 5, updated_at="2026-11-20T11:00:00Z")
    assert _post(client, path, edited).status_code == 200
    assert _stored(client, world) == ["ls:69"]
    (stored,) = [a for a in world.store.annotations() if a.external_id == "ls:69"]
    assert stored.states == (State.INTACT,) * 5 and len(world.store.revisions("ls:69")) == 1

    assert _post(client, path, webhook_body("ANNOTATIONS_DELETED", 69)).json()["deleted"] == 1
    assert _stored(client, world) == []
    assert [a.external_id for a in world.store.annotations(include_retracted=True)][-1] == "ls:69"


def test_unknown_building_is_quarantined_not_lost(client: TestClient, world: World) -> None:
    assert (
        _post(
            client, "/webhooks/labelstudio", webhook_body("ANNOTATION_CREATED", 70, building_id="B999")
        ).status_code
        == 200
    )
    assert _stored(client, world) == []
    (kept,) = world.store.quarantine()
    assert (
        kept.external_id == "ls:70" and kept.field == "building_id" and kept.payload["building_id"] == "B999"
    )


@pytest.fixture
def gated(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, threading.Event]]:
    """The app whose store writes wait for a gate, to see that the webhook is answered before the write."""
    import serving.resources

    gate = threading.Event()
    real = serving.resources.apply_webhook

    def slow(store, received):  # type: ignore[no-untyped-def]
        gate.wait(timeout=30)
        return real(store, received)

    monkeypatch.setattr(serving.resources, "apply_webhook", slow)
    with TestClient(create_app(world.settings)) as client:
        yield client, gate
        gate.set()


def test_webhook_is_answered_before_the_store_write(
    gated: tuple[TestClient, threading.Event], world: World
) -> None:
    client, gate = gated
    r = _post(client, "/webhook", webhook_body("ANNOTATION_CREATED", 71))
    assert r.status_code == 200 and r.json()["queued"] is True
    assert "ls:71" not in {
        a.external_id for a in world.store.annotations()
    }  # not written yet: the gate is shut
    gate.set()
    assert _stored(client, world) == ["ls:71"]


@pytest.mark.parametrize("path", HOOKS)
@pytest.mark.parametrize("headers", [{}, {"X-Striketracker-Secret": ""}, {"X-Striketracker-Secret": "wrong"},
                                     {"X-Striketracker-Secret": SECRET + "x"}])  # fmt: skip
def test_wrong_or_missing_secret_is_401_and_stores_nothing(
    client: TestClient, world: World, path: str, headers: dict[str, str]
) -> None:
    r = _post(client, path, webhook_body("ANNOTATION_CREATED", 72), headers)
    assert r.status_code == 401 and r.json() == {"detail": "invalid webhook secret"}
    assert _stored(client, world) == [] and world.store.quarantine() == []


@pytest.mark.parametrize("path", HOOKS)
def test_malformed_body_is_400_and_logged_without_content(
    client: TestClient, world: World, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    marker = "PRIVATE-EMAIL@example.org"
    with caplog.at_level(logging.DEBUG):
        r1 = client.post(path, content=f"{{{marker}".encode(), headers=OK)
        r2 = _post(client, path, {"action": "ANNOTATION_CREATED", "annotation": {"email": marker}})
    assert r1.status_code == r2.status_code == 400
    assert r1.json() == {"detail": "malformed webhook body"} and marker not in r1.text + r2.text
    assert "malformed webhook" in caplog.text and marker not in caplog.text
    assert _stored(client, world) == []


def test_other_events_are_acknowledged_and_ignored(client: TestClient, world: World) -> None:
    for action in ("START_TRAINING", "PROJECT_UPDATED"):
        r = _post(client, "/webhook", {"action": action, "project": {"id": 3}})
        assert r.status_code == 200 and r.json()["queued"] is False
    assert _stored(client, world) == []
