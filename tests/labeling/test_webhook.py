"""Webhook secret verification and payload parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labeling.errors import WebhookAuthError, WebhookPayloadError
from labeling.webhook import parse_webhook, verify_secret

DATA = Path(__file__).parent / "data"
SECRET = b"k"


def test_created_webhook_is_converted() -> None:
    event = parse_webhook((DATA / "webhook_created.json").read_bytes(), secret=SECRET)
    assert event.action == "ANNOTATION_CREATED" and event.project_id == 4
    (a,) = event.annotations
    assert a.building_id == "B7" and a.states == ("intact", "destroyed") and a.external_id == "ls:69"
    assert a.task_id == 462 and event.problems == ()


def test_deleted_webhook_lists_external_ids() -> None:
    event = parse_webhook((DATA / "webhook_deleted.json").read_bytes(), secret=SECRET)
    assert event.deleted == ("ls:45", "ls:46") and event.annotations == ()


def test_other_actions_are_ignored_with_a_note() -> None:
    event = parse_webhook(b'{"action": "PROJECT_UPDATED", "project": {"id": 2}}', secret=SECRET)
    assert event.annotations == () and event.deleted == () and "not an annotation event" in event.problems[0]


MARKER = "PRIVATE-volunteer@example.org"


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (f"{{not json {MARKER}".encode(), "not JSON"),
        (f'["{MARKER}", 2]'.encode(), "JSON list"),
        (f'{{"annotation": {{"email": "{MARKER}"}}}}'.encode(), "no 'action'"),
        (f'{{"action": "{MARKER}"}}'.encode(), "no 'action'"),
        (
            f'{{"action": "ANNOTATION_CREATED", "annotation": {{"id": 1, "email": "{MARKER}"}}}}'.encode(),
            "lacks an 'annotation' object or a 'task'",
        ),
        (f'{{"action": "ANNOTATIONS_DELETED", "note": "{MARKER}"}}'.encode(), "lacks an 'annotations' list"),
    ],
)
def test_malformed_bodies_are_rejected_without_echoing_content(body: bytes, match: str) -> None:
    assert MARKER.encode() in body
    with pytest.raises(WebhookPayloadError, match=match) as info:
        parse_webhook(body, secret=SECRET)
    assert "PRIVATE" not in str(info.value) and "example.org" not in str(info.value)


def test_secret_verification() -> None:
    verify_secret("s3cret", "s3cret")
    for received in (None, "", "s3creT", "s3cret "):
        with pytest.raises(WebhookAuthError):
            verify_secret(received, "s3cret")
    with pytest.raises(WebhookAuthError, match="no webhook secret is configured"):
        verify_secret("anything", "")


def test_created_webhook_with_bad_annotation_reports_problem() -> None:
    payload = json.loads((DATA / "webhook_created.json").read_text())
    payload["annotation"]["result"][1]["value"]["choices"] = ["gone"]
    event = parse_webhook(json.dumps(payload).encode(), secret=SECRET)
    assert event.annotations[0].states == ("intact", "not_visible")
    assert any("'gone'" in p for p in event.problems)
