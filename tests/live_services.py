"""One real Label Studio server per test session, plus the striketracker service on loopback (:func:`running`).

The server runs from the same isolated env that ``striketracker labelstudio install`` builds
(``.work/labelstudio/label-studio-env``; installed here if missing) with its own data dir under
``.work/test-labelstudio`` (kept between sessions so a restart takes seconds instead of a ~45 s migration) on a
free port, and is stopped at the end of the session.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from pydantic import SecretStr

from active_learning.settings import Settings
from labeling import (
    LabelStudioClient,
    LabelStudioServer,
    ServerConfig,
    WebhookEvent,
    legacy_token_from_secret,
)
from serving.app import create_app
from tests.labeling.chip_cache import write_chip_cache

REPO = Path(__file__).resolve().parents[1]
ENV = REPO / ".work" / "labelstudio" / "label-studio-env"
ROOT = REPO / ".work" / "test-labelstudio"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _secret(name: str) -> str:
    path = ROOT / "secrets" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


@dataclass
class LiveLabelStudio:
    server: LabelStudioServer
    client: LabelStudioClient
    url: str
    start_seconds: float


@dataclass
class LiveService:
    url: str
    webhook_secret: str
    pseudonym_secret: bytes
    building_ids: tuple[str, ...]
    dates: tuple[str, ...]
    events: list[WebhookEvent] = field(default_factory=list)
    scenario: Path | None = None  # the scenario folder behind the chips (its truth), when there is one


@pytest.fixture(scope="session")
def label_studio() -> Iterator[LiveLabelStudio]:
    ROOT.mkdir(parents=True, exist_ok=True)
    config = ServerConfig(
        root=ROOT,
        env=ENV,
        admin_email="admin@striketracker.test",
        admin_password=_secret("admin_password"),
        api_token=legacy_token_from_secret(_secret("token")),
        port=free_port(),
    )
    server = LabelStudioServer(config)
    server.stop()  # a server left over by an interrupted session
    server.install()
    began = time.monotonic()
    status = server.start(timeout=300)
    elapsed = time.monotonic() - began
    client = LabelStudioClient(status.url, config.api_token)
    try:
        yield LiveLabelStudio(server, client, status.url, elapsed)
    finally:
        client.close()
        server.stop()


@contextmanager
def running(app: Any, port: int | None = None) -> Iterator[str]:
    """Run an ASGI app with uvicorn on loopback (a free port by default), in a thread; yields its base URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        if not thread.is_alive():
            break
        time.sleep(0.05)
    assert server.started, "the striketracker service did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def _serve(settings: Settings, live: LiveService) -> Iterator[LiveService]:
    """Run the striketracker app for ``settings``; webhook events are collected in ``live.events``."""
    app = create_app(settings, webhook_sink=lambda received: live.events.append(received.event))
    live.pseudonym_secret = app.state.resources.pseudonym_secret
    with running(app) as url:
        live.url = url
        yield live


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """The service over a synthetic chip cache of 240 buildings and 6 dates (bulk push and pull tests)."""
    work = tmp_path_factory.mktemp("service")
    ids, dates = write_chip_cache(work / "chips", n_buildings=240, n_dates=6, size=32)
    settings = Settings(work_dir=work, webhook_secret=SecretStr(secrets.token_urlsafe(16)))
    live = LiveService("", settings.webhook_secret.get_secret_value(), b"", ids, dates)
    with _serve(settings, live) as served:
        yield served


@pytest.fixture(scope="session")
def scenario_service(
    tmp_path_factory: pytest.TempPathFactory, label_studio: LiveLabelStudio
) -> Iterator[LiveService]:
    """The service over real chips: the tiny Raqqa scenario, generated and ingested by the project's own code.

    ``building_ids`` lists buildings destroyed mid-timeline first. Chips answer cross-origin requests from the
    session's Label Studio (its origin is the default of ``Settings.cors_origins``), as in production.
    """
    from experiments.scenario import generate, load_truth
    from model.chips import ingest

    work = tmp_path_factory.mktemp("scenario-service")
    generate("tiny", 0, work / "scenario", progress=False)
    stack = ingest(work / "scenario", work / "scenario" / "footprints.gpkg", work / "chips", warn=False)
    n = len(stack.dates)
    gaps = load_truth(work / "scenario").true_gaps()
    ids = sorted(stack.building_ids, key=lambda b: (not 3 <= gaps.get(b, -1) <= n - 3, b))
    settings = Settings(
        work_dir=work,
        chip_cache=work / "chips",
        label_studio_url=label_studio.url,
        webhook_secret=SecretStr(secrets.token_urlsafe(16)),
    )
    live = LiveService(
        "",
        settings.webhook_secret.get_secret_value(),
        b"",
        tuple(ids),
        tuple(d.isoformat() for d in stack.dates),
        scenario=work / "scenario",
    )
    with _serve(settings, live) as served:
        yield served
