"""The service's edge: no bodies or tokens in logs on any route, no tracebacks to clients, CORS closed but for
chips, settings that refuse unsafe values, a complete OpenAPI schema, Prometheus metrics."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr, ValidationError

from active_learning.settings import Settings
from serving.app import create_app
from serving.mlbackend import GapPrediction
from tests.serving.world import SECRET, TOKEN, World

MARKER = "SECRET-MARKER-7f3a9c"

# every route of the app with a request that carries the marker in its body and its headers
REQUESTS: dict[tuple[str, str], tuple[str, str]] = {
    ("GET", "/api/buildings"): ("GET", "/api/buildings?bbox=1,2,3"),
    ("GET", "/api/buildings/{building_id}"): ("GET", "/api/buildings/B000"),
    ("POST", "/api/buildings/{building_id}/verdict"): ("POST", "/api/buildings/B000/verdict"),
    ("GET", "/api/queue"): ("GET", "/api/queue"),
    ("GET", "/api/campaign"): ("GET", "/api/campaign"),
    ("GET", "/api/timeline"): ("GET", "/api/timeline"),
    ("GET", "/api/export.{fmt}"): ("GET", "/api/export.csv"),
    ("GET", "/chips/{building_id}/{date_index}.png"): ("GET", "/chips/B000/1.png"),
    ("POST", "/webhooks/labelstudio"): ("POST", "/webhooks/labelstudio"),
    ("GET", "/health"): ("GET", "/health"),
    ("POST", "/setup"): ("POST", "/setup"),
    ("POST", "/predict"): ("POST", "/predict"),
    ("POST", "/webhook"): ("POST", "/webhook"),
    ("GET", "/review"): ("GET", "/review"),
    ("GET", "/"): ("GET", "/"),
    ("GET", "/metrics"): ("GET", "/metrics"),
}


class FakePredictor:
    """A stand-in model: /predict's protocol does not depend on which network answers."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def model_version(self, refresh: bool = False) -> str | None:
        return "fake/1"

    def predict(self, building_ids: Sequence[str]) -> dict[str, GapPrediction]:
        if self.fail:
            raise RuntimeError(f"boom with {MARKER} inside")
        import numpy as np

        return {b: GapPrediction(np.full(6, 1 / 6), 0.5, "fake/1") for b in building_ids}


HIDDEN = {("GET", "/")}  # routes left out of the schema on purpose (the redirect to /review)


def _routes(client: TestClient) -> set[tuple[str, str]]:
    """Every route of the app: the schema's operations plus the hidden ones."""
    paths = client.get("/openapi.json").json()["paths"]
    return {(method.upper(), path) for path, item in paths.items() for method in item} | HIDDEN


@pytest.mark.parametrize("token", ["valid", "marker"])
def test_no_body_or_token_reaches_the_logs_on_any_route(
    world: World, caplog: pytest.LogCaptureFixture, token: str
) -> None:
    """Each route gets a body with the marker and an Authorization/secret header with it (or the real token)."""
    app = create_app(world.settings, predictor=FakePredictor())
    bodies = {
        "/api/buildings/B000/verdict": {"gap": 9, "note": MARKER, "reviewer": MARKER},
        "/webhooks/labelstudio": {"action": "ANNOTATION_CREATED", "annotation": {"id": MARKER}},
        "/webhook": {"action": "ANNOTATION_CREATED", "annotation": {"id": 5, "completed_by": MARKER}},
        "/setup": {"project": MARKER, "access_token": MARKER, "schema": MARKER},
        "/predict": {"tasks": [{"id": 1, "data": {"building_id": MARKER, "timeline": [MARKER]}}]},
    }
    secret = TOKEN if token == "valid" else MARKER
    headers = {
        "Authorization": f"Bearer {secret}",
        "X-Striketracker-Secret": SECRET if token == "valid" else MARKER,
    }
    with caplog.at_level(logging.DEBUG), TestClient(app) as client:
        assert _routes(client) == set(REQUESTS), "a route was added: give it a request here"
        for method, url in REQUESTS.values():
            path = url.split("?")[0]
            r = client.request(method, url, json=bodies.get(path), headers=headers)
            assert r.status_code < 500, (url, r.status_code)
            assert MARKER not in r.text or path == "/api/export.csv", url
        client.app.state.resources.events.join()  # type: ignore[attr-defined]
    assert caplog.records, "nothing was logged at all: the test would pass for the wrong reason"
    assert MARKER not in caplog.text
    assert TOKEN not in caplog.text and SECRET not in caplog.text


def test_unexpected_errors_are_a_bare_500_and_logged_without_their_message(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.DEBUG),
        TestClient(create_app(world.settings, predictor=FakePredictor(fail=True))) as c,
    ):
        r = c.post(
            "/predict", json={"tasks": [{"data": {"building_id": "B000", "timeline": [1, 2, 3, 4, 5]}}]}
        )
    assert r.status_code == 500 and r.json() == {"detail": "internal error"}
    assert "Traceback" not in r.text and MARKER not in r.text
    assert "unhandled RuntimeError at" in caplog.text and MARKER not in caplog.text


def test_cors_is_closed_except_chips_for_label_studio(world: World, client: TestClient) -> None:
    ls = world.settings.cors_origins[0]
    assert ls == "http://127.0.0.1:8089"
    chip = client.get("/chips/B000/0.png", headers={"Origin": ls})
    assert chip.headers["access-control-allow-origin"] == ls
    assert (
        "access-control-allow-origin"
        not in client.get("/chips/B000/0.png", headers={"Origin": "http://evil"}).headers
    )
    for url in ("/api/buildings", "/api/buildings/B000", "/metrics", "/review"):
        assert "access-control-allow-origin" not in client.get(url, headers={"Origin": ls}).headers
    preflight = client.options(
        "/api/buildings/B000/verdict", headers={"Origin": ls, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 405 and "access-control-allow-origin" not in preflight.headers


def test_chips_are_cached_and_revalidated(client: TestClient) -> None:
    first = client.get("/chips/B000/2.png")
    again = client.get("/chips/B000/2.png", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    resources = client.app.state.resources  # type: ignore[attr-defined]
    assert (resources.chips.misses, resources.chips.hits) == (1, 1)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"api_host": "0.0.0.0"}, "STRIKETRACKER_API_TOKEN"),
        ({"cors_origins": "*,http://a"}, "give it alone"),
        ({"max_request_bytes": 10}, "at least 1024"),
        ({"max_predict_bytes": 0}, "at least 1024"),
    ],
)
def test_settings_refuse_unsafe_values(changes: dict[str, object], message: str) -> None:
    with pytest.raises((ValidationError, ValueError), match=message):
        Settings(**changes)  # type: ignore[arg-type]
    assert Settings(api_host="0.0.0.0", api_token=SecretStr("t")).api_host == "0.0.0.0"


def test_a_generated_token_protects_writes_when_none_is_configured(world: World) -> None:
    settings = world.settings.model_copy(update={"api_token": SecretStr("")})
    with TestClient(create_app(settings)) as client:
        token = (settings.work_dir / "secrets" / "api_token").read_text().strip()
        assert len(token) >= 32 and (settings.work_dir / "secrets" / "api_token").stat().st_mode & 0o077 == 0
        assert client.post("/api/buildings/B001/verdict", json={"gap": 2}).status_code == 401
        assert (
            client.post(
                "/api/buildings/B001/verdict", json={"gap": 2}, headers={"Authorization": "Bearer "}
            ).status_code
            == 401
        )
        ok = client.post(
            "/api/buildings/B001/verdict", json={"gap": 2}, headers={"Authorization": f"Bearer {token}"}
        )
        assert ok.status_code == 201


def test_openapi_schema_is_complete(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert client.get("/docs").status_code == 404  # no page that loads scripts from a CDN
    for path, item in schema["paths"].items():
        for method, op in item.items():
            assert op.get("summary") and op.get("description"), (method, path)
            ok = next(code for code in op["responses"] if code.startswith("2"))
            assert op["responses"][ok].get("content"), (method, path, "no response content documented")
    verdict = schema["paths"]["/api/buildings/{building_id}/verdict"]["post"]
    assert set(verdict["responses"]) >= {"201", "401", "404", "409", "413", "422"}
    assert verdict["security"] == [{"HTTPBearer": []}]
    assert (
        "VerdictIn" in schema["components"]["schemas"]
        and "BuildingDetailOut" in schema["components"]["schemas"]
    )
    listing = schema["paths"]["/api/buildings"]["get"]["responses"]["200"]["content"]["application/geo+json"]
    assert listing["schema"]["$ref"].endswith("FeatureCollectionOut")


def test_metrics_count_requests_by_route_template(client: TestClient, auth: dict[str, str]) -> None:
    client.get("/api/buildings/B000")
    client.get("/api/buildings/B001")
    client.get("/api/buildings/NOPE")
    client.post("/api/buildings/B001/verdict", json={"gap": 2}, headers=auth)
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    requests = {
        (s.labels["route"], s.labels["status"]): s.value
        for s in families["striketracker_http_requests"].samples
        if s.name.endswith("_total")
    }
    assert requests[("/api/buildings/{building_id}", "200")] == 2
    assert requests[("/api/buildings/{building_id}", "404")] == 1
    assert not any("B001" in route for route, _ in requests)
    verdicts = {
        s.labels["outcome"]: s.value
        for s in families["striketracker_verdicts"].samples
        if s.name.endswith("_total")
    }
    assert verdicts == {"stored": 1.0}
    statuses = {s.labels["status"]: s.value for s in families["striketracker_buildings"].samples}
    assert statuses == {"expert": 1.0, "in_review": 1.0, "settled": 2.0, "unlabelled": 1.0}
    assert "striketracker_http_request_duration_seconds" in families
