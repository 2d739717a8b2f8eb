"""Webhooks write into the store: annotations with their comments, deletions retracted, unconvertible ones
quarantined with their payload, each exactly once however often Label Studio sends it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from active_learning.store import Store
from labeling import WebhookPayloadError
from serving.events import store_webhook

DATA = Path(__file__).parents[1] / "labeling" / "data"
SECRET = b"pseudonym-key"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    s.add_buildings(["B7"], n_dates=2)
    return s


def _body(**annotation: object) -> bytes:
    payload = json.loads((DATA / "webhook_created.json").read_bytes())
    payload["annotation"].update(annotation)
    return json.dumps(payload).encode()


def test_a_created_webhook_lands_in_the_store_once(store: Store) -> None:
    comment = {
        "from_name": "comment",
        "to_name": "timeline",
        "type": "textarea",
        "value": {"text": ["roof gone"]},
    }
    body = json.loads((DATA / "webhook_created.json").read_bytes())
    body["annotation"]["result"].append(comment)
    raw = json.dumps(body).encode()
    first = store_webhook(store, raw, secret=SECRET)
    again = store_webhook(store, raw, secret=SECRET)  # Label Studio or a retrying proxy sends it twice
    assert (first.inserted, again.inserted, again.unchanged) == (1, 0, 1)
    (stored,) = store.annotations()
    assert stored.external_id == "ls:69" and stored.source == "labelstudio" and stored.comment == "roof gone"


def test_a_deleted_webhook_retracts_and_a_late_update_does_not_undo_it(store: Store) -> None:
    store_webhook(store, (DATA / "webhook_created.json").read_bytes(), secret=SECRET)
    deleted = json.dumps({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 69}], "project": {"id": 4}})
    assert store_webhook(store, deleted.encode(), secret=SECRET).retracted == 1
    edited = _body(
        updated_at="2026-11-21T06:51:00Z",
        result=[{"from_name": "state_0", "to_name": "img_0", "type": "choices", "value": {"choices": ["damaged"]}},
                {"from_name": "state_1", "to_name": "img_1", "type": "choices", "value": {"choices": ["destroyed"]}}],
    )  # fmt: skip
    late = store_webhook(store, edited, secret=SECRET)
    assert late.kept_retracted == 1 and store.annotations() == []


def test_an_unconvertible_annotation_is_quarantined_with_its_payload(store: Store) -> None:
    report = store_webhook(store, _body(result="garbage"), secret=SECRET)
    assert (report.inserted, report.quarantined) == (0, 1)
    (kept,) = store.quarantine()
    assert kept.external_id == "ls:69" and kept.building_id == "B7"
    assert kept.payload["annotation"]["result"] == "garbage"
    store_webhook(store, _body(result="garbage"), secret=SECRET)
    assert len(store.quarantine()) == 1  # the same failure delivered twice is kept once
    with pytest.raises(WebhookPayloadError):
        store_webhook(store, b"[]", secret=SECRET)
