"""The webhook endpoint: shared secret verified, malformed bodies rejected and logged without their content."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from active_learning.settings import Settings
from labeling import WebhookEvent
from serving.app import create_app

DATA = Path(__file__).parents[1] / "labeling" / "data"
SECRET = "hook-secret-123"


@pytest.fixture
def events() -> list[WebhookEvent]:
    return []


@pytest.fixture
def client(tmp_path: Path, events: list[WebhookEvent]) -> TestClient:
    settings = Settings(work_dir=tmp_path, webhook_secret=SecretStr(SECRET))
    return TestClient(create_app(settings, webhook_sink=events.append))


def test_valid_webhook_reaches_the_sink(client: TestClient, events: list[WebhookEvent]) -> None:
    body = (DATA / "webhook_created.json").read_bytes()
    r = client.post("/webhooks/labelstudio", content=body, headers={"X-Striketracker-Secret": SECRET})
    assert r.status_code == 200 and r.json() == {
        "action": "ANNOTATION_CREATED",
        "annotations": 1,
        "deleted": 0,
    }
    assert events[0].annotations[0].external_id == "ls:69"


@pytest.mark.parametrize("header", [None, "", "wrong", SECRET + "x"])
def test_wrong_or_missing_secret_is_401(
    client: TestClient, events: list[WebhookEvent], header: str | None
) -> None:
    headers = {} if header is None else {"X-Striketracker-Secret": header}
    r = client.post(
        "/webhooks/labelstudio", content=(DATA / "webhook_deleted.json").read_bytes(), headers=headers
    )
    assert r.status_code == 401 and events == []


def test_malformed_body_is_400_and_logged_without_content(
    client: TestClient, events: list[WebhookEvent], caplog: pytest.LogCaptureFixture
) -> None:
    marker = "PRIVATE-EMAIL@example.org"
    with caplog.at_level(logging.WARNING):
        r1 = client.post(
            "/webhooks/labelstudio",
            content=f"{{{marker}".encode(),
            headers={"X-Striketracker-Secret": SECRET},
        )
        r2 = client.post(
            "/webhooks/labelstudio",
            content=json.dumps({"action": "ANNOTATION_CREATED", "annotation": {"email": marker}}).encode(),
            headers={"X-Striketracker-Secret": SECRET},
        )
    assert r1.status_code == r2.status_code == 400
    assert marker not in r1.text + r2.text
    assert "malformed webhook" in caplog.text and marker not in caplog.text
    assert events == []


def test_default_sink_writes_pseudonymous_jsonl(tmp_path: Path) -> None:
    settings = Settings(work_dir=tmp_path, webhook_secret=SecretStr(SECRET))
    client = TestClient(create_app(settings))
    body = (DATA / "webhook_created.json").read_bytes()
    assert (
        client.post(
            "/webhooks/labelstudio", content=body, headers={"X-Striketracker-Secret": SECRET}
        ).status_code
        == 200
    )
    (line,) = (tmp_path / "labelstudio" / "webhook_inbox.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert (
        record["annotations"][0]["volunteer_id"].startswith("v-")
        and record["annotations"][0]["building_id"] == "B7"
    )
