"""The Label Studio ML-backend protocol against a real MLflow champion: /health, /setup, /predict."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from active_learning.settings import Settings
from model.registry import CHAMPION, MODEL_NAME, Tracking
from serving.app import create_app
from tests.serving.champion import register_champion
from tests.serving.conftest import Registry
from tests.serving.world import DATES, World


@pytest.fixture
def ml(world: World, registry: Registry) -> Iterator[TestClient]:
    with TestClient(create_app(registry.settings(world.settings))) as client:
        yield client


def _task(building_id: str, n_dates: int = len(DATES), task_id: int = 1) -> dict[str, object]:
    timeline = [{"date": d.isoformat(), "url": f"http://x/{t}.png"} for t, d in enumerate(DATES[:n_dates])]
    return {
        "id": task_id,
        "data": {"building_id": building_id, "timeline": timeline},
        "annotations": [],
        "predictions": [],
    }


def test_health_and_setup(ml: TestClient, registry: Registry) -> None:
    assert ml.get("/health").json() == {"status": "UP", "model_class": "striketracker-dating"}
    setup = {"project": "3.1732", "schema": "<View/>", "hostname": "http://ls", "access_token": "LS-TOKEN-1"}
    r = ml.post("/setup", json=setup)
    assert r.status_code == 200 and r.json() == {"model_version": registry.champion.label}


def test_predict_answers_every_task_in_order(ml: TestClient, registry: Registry) -> None:
    body = {"tasks": [_task("B000", task_id=1), _task("NOPE", task_id=2), _task("B001", n_dates=3, task_id=3),
                      _task("B002", task_id=4)], "project": "3.1732", "label_config": "<View/>", "params": {}}  # fmt: skip
    r = ml.post("/predict", json=body)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 4 and r.json()["model_version"] == registry.champion.label
    first, unknown, wrong_dates, last = results
    for prediction in (first, last):
        assert prediction["model_version"] == registry.champion.label and 0.0 < prediction["score"] <= 1.0
        names = [x["from_name"] for x in prediction["result"]]
        assert names == [f"state_{t}" for t in range(len(DATES))]
        states = [x["value"]["choices"][0] for x in prediction["result"]]
        first_damaged = next((t for t, s in enumerate(states) if s != "intact"), len(states))
        assert all(s == "intact" for s in states[:first_damaged])  # one change point, never back
        assert all(s in ("damaged", "destroyed") for s in states[first_damaged:])
        assert all(0.0 <= x["score"] <= 1.0 for x in prediction["result"])
    assert unknown["result"] == [] and unknown["score"] == 0.0
    assert wrong_dates["result"] == []  # the task's timeline does not match the chip cache's

    again = ml.post("/predict", json={"tasks": [_task("B002")]}).json()["results"][0]
    assert again == last  # the same champion gives the same answer (cached or not)


def test_setup_follows_the_champion_alias(ml: TestClient, registry: Registry) -> None:
    tracking = Tracking(registry.tracking_uri, registry.artifact_root)
    mlflow = tracking.client()
    try:
        mlflow.delete_registered_model_alias(MODEL_NAME, CHAMPION)
        assert ml.post("/setup", json={}).json() == {"model_version": "none"}
        empty = ml.post("/predict", json={"tasks": [_task("B000")]}).json()
        assert empty["results"] == [{"result": [], "score": 0.0, "model_version": "none"}]

        newer = register_champion(
            Settings(work_dir=tracking.artifact_root, mlflow_tracking_uri=registry.tracking_uri,
                     mlflow_artifact_root=registry.artifact_root),
            seed=1,
        )  # fmt: skip
        assert ml.post("/setup", json={}).json() == {"model_version": newer.label}
        moved = ml.post("/predict", json={"tasks": [_task("B000")]}).json()["results"][0]
        assert moved["model_version"] == newer.label and len(moved["result"]) == len(DATES)
    finally:
        mlflow.set_registered_model_alias(MODEL_NAME, CHAMPION, registry.champion.version)


def test_predict_rejects_malformed_requests(ml: TestClient) -> None:
    assert ml.post("/predict", json={"tasks": "all"}).status_code == 422
    assert ml.post("/predict", content=b"{", headers={"Content-Type": "application/json"}).status_code == 422
    r = ml.post("/predict", json={})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "tasks"]
