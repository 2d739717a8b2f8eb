"""The striketracker service: ``create_app(settings)`` builds the FastAPI app.

Routers, one per resource, live in ``serving/routes``. Resources the routes need (the chip cache, the webhook
secret and sink) are put on ``app.state`` here, so tests build an app from Settings and nothing happens at
import time.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

from fastapi import FastAPI

from active_learning.settings import Settings
from labeling import WebhookEvent
from serving.labelstudio import pseudonym_secret, webhook_secret
from serving.routes import chips, webhooks

__all__ = ["JsonlWebhookInbox", "create_app"]


class JsonlWebhookInbox:
    """Default webhook sink: appends each event (pseudonymous ids only) as one JSON line.

    Args:
        path: the inbox file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def __call__(self, event: WebhookEvent) -> None:
        record = {
            "action": event.action,
            "project_id": event.project_id,
            "annotations": [
                {**dataclasses.asdict(a), "submitted_at": a.submitted_at.isoformat()}
                for a in event.annotations
            ],
            "deleted": list(event.deleted),
        }
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")


def create_app(
    settings: Settings,
    *,
    chip_cache: Path | None = None,
    webhook_sink: webhooks.WebhookSink | None = None,
) -> FastAPI:
    """Build the service.

    Args:
        settings: the one configuration object.
        chip_cache: chip cache folder served under ``/chips`` (default ``<work_dir>/chips``).
        webhook_sink: receives verified webhook events (default: a JSONL inbox under the work dir).
    """
    app = FastAPI(title="striketracker", version="0.1.0")
    app.state.settings = settings
    app.state.chips = chips.ChipSource(chip_cache or settings.work_dir / "chips")
    app.state.webhook_secret = webhook_secret(settings)
    app.state.pseudonym_secret = pseudonym_secret(settings)
    app.state.webhook_sink = webhook_sink or JsonlWebhookInbox(
        settings.work_dir / "labelstudio" / "webhook_inbox.jsonl"
    )
    app.include_router(chips.router)
    app.include_router(webhooks.router)

    @app.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        return {"status": "UP"}

    return app
