"""The service against a real Label Studio: ``labelstudio setup`` and ``push``, then Label Studio itself calls
the ML backend (``/health``, ``/setup``, ``/predict`` from the Data Manager action) and delivers webhooks that
end in the store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from label_studio_sdk import LabelStudio
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from typer.testing import CliRunner

from active_learning.settings import Settings
from active_learning.store import Store
from labeling import LabelStudioClient
from labeling.convert import states_to_result
from labeling.webhook import SECRET_HEADER
from serving.app import create_app
from serving.cli import app as cli
from serving.push import POSTERIOR_VERSION
from tests.live_services import LiveLabelStudio, free_port, running
from tests.serving.conftest import Registry
from tests.serving.world import DATES, SECRET, World

pytestmark = pytest.mark.integration

TITLE = "service-live-test"


@dataclass
class Live:
    settings: Settings
    app: FastAPI
    url: str
    env: dict[str, str]
    ls: LabelStudio
    client: LabelStudioClient


@pytest.fixture
def live(world: World, registry: Registry, label_studio: LiveLabelStudio) -> Iterator[Live]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    token = label_studio.server.config.api_token
    settings = registry.settings(world.settings).model_copy(
        update={"label_studio_url": label_studio.url, "label_studio_token": SecretStr(token),
                "public_base_url": url, "ml_backend_url": url}
    )  # fmt: skip
    env = {
        "STRIKETRACKER_WORK_DIR": str(settings.work_dir),
        "STRIKETRACKER_CHIP_CACHE": str(settings.chip_cache),
        "STRIKETRACKER_LABEL_STUDIO_URL": label_studio.url,
        "STRIKETRACKER_LABEL_STUDIO_TOKEN": token,
        "STRIKETRACKER_WEBHOOK_SECRET": SECRET,
        "STRIKETRACKER_PUBLIC_BASE_URL": url,
        "STRIKETRACKER_MLFLOW_TRACKING_URI": registry.tracking_uri,
    }
    app = create_app(settings)
    sdk = LabelStudio(base_url=label_studio.url, api_key=token)
    for old in [p for p in sdk.projects.list() if p.title == TITLE]:
        sdk.projects.delete(id=old.id)
    with running(app, port) as served:
        yield Live(settings, app, served, env, sdk, label_studio.client)
    for old in [p for p in sdk.projects.list() if p.title == TITLE]:
        sdk.projects.delete(id=old.id)


def _metric(url: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_label_studio_uses_the_service_as_ml_backend_and_webhook(live: Live, registry: Registry) -> None:
    runner = CliRunner()
    setup = runner.invoke(cli, ["labelstudio", "setup", "--title", TITLE, "--overlap", "2"], env=live.env)
    assert setup.exit_code == 0, setup.output
    record = json.loads((live.settings.work_dir / "labelstudio" / "project.json").read_text())
    pid = record["project_id"]
    assert record["service_url"] == live.url and record["ml_backend_id"]

    # Label Studio connected the backend: it called /health and /setup, which answered the champion's version
    (backend,) = live.ls.ml.list(project=pid)
    assert backend.url == live.url and backend.state == "CO"
    assert backend.model_version == registry.champion.label
    assert _metric(live.url, "striketracker_http_requests_total", route="/setup", status="200") >= 1
    hooks = {h.url: h for h in live.ls.webhooks.list(project=str(pid))}
    assert set(hooks) == {f"{live.url}/webhooks/labelstudio", f"{live.url}/webhook"}
    assert all(
        h.headers == {SECRET_HEADER: SECRET} for h in hooks.values()
    )  # no unauthenticated auto-webhook
    project = live.ls.projects.get(id=pid)
    assert project.maximum_annotations == 2

    again = runner.invoke(cli, ["labelstudio", "setup", "--title", TITLE, "--overlap", "3"], env=live.env)
    assert again.exit_code == 0 and "reused" in again.output
    assert len(live.ls.ml.list(project=pid)) == 1 and len(live.ls.webhooks.list(project=str(pid))) == 2
    assert live.ls.projects.get(id=pid).maximum_annotations == 3

    pushed = runner.invoke(
        cli, ["labelstudio", "push", "--building", "B000", "--building", "B001", "--queue", "2"], env=live.env
    )
    assert pushed.exit_code == 0, pushed.output
    assert "4 tasks created" in pushed.output  # B000, B001 and the labeling queue's B002, B003
    tasks = {t.data["building_id"]: t for t in live.ls.tasks.list(project=pid, fields="all")}
    assert set(tasks) == {"B000", "B001", "B002", "B003"}
    assert all(p.model_version == POSTERIOR_VERSION for t in tasks.values() for p in t.predictions)

    # the Data Manager's "Retrieve predictions": Label Studio posts every selected task to /predict
    before = _metric(live.url, "striketracker_ml_predictions_total", outcome="predicted")
    live.ls.actions.create(
        id="retrieve_tasks_predictions", project=pid, selected_items={"all": True, "excluded": []}
    )
    assert _metric(live.url, "striketracker_ml_predictions_total", outcome="predicted") == before + 4
    for task in live.ls.tasks.list(project=pid, fields="all"):
        ours = [p for p in task.predictions if p.model_version == registry.champion.label]
        assert len(ours) == 1, task.data["building_id"]
        assert 0.0 < ours[0].score <= 1.0 and len(ours[0].result) == len(DATES)
        assert {r["from_name"] for r in ours[0].result} == {f"state_{t}" for t in range(len(DATES))}

    # a volunteer's annotation: Label Studio sends it to both webhooks, the store keeps it once
    states = ("intact", "intact", "intact", "destroyed", "destroyed")
    annotation = live.client.submit(tasks["B000"].id, states_to_result(states), lead_time=4.0)
    events = live.app.state.resources.events
    events.join()
    stored = [a for a in _store(live).annotations() if a.external_id == f"ls:{annotation}"]
    assert len(stored) == 1 and stored[0].building_id == "B000" and stored[0].source == "labelstudio"
    assert (
        _metric(live.url, "striketracker_webhook_events_total", action="ANNOTATION_CREATED", outcome="stored")
        == 2
    )
    # the reconciliation pass finds what the webhook stored, from the store's cursor; --full re-reads it all
    for args in ([], ["--full"]):
        synced = runner.invoke(cli, ["labelstudio", "sync", "--project", str(pid), *args], env=live.env)
        assert synced.exit_code == 0, synced.output
        assert f"project {pid}: 0 new, 0 edited, 0 retracted, 1 unchanged" in synced.output, synced.output
    assert _store(live).cursor(f"labelstudio:project:{pid}")
    live.client.update_annotation(annotation, states_to_result(("intact",) * len(DATES)))
    live.client.delete_annotation(annotation)
    events.join()
    store = _store(live)
    assert f"ls:{annotation}" not in {a.external_id for a in store.annotations()}
    assert len(store.revisions(f"ls:{annotation}")) == 1 and store.quarantine() == []


def _store(live: Live) -> Store:
    return Store.open(live.settings.database_url)
