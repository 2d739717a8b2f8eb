"""Everything one app instance holds, built from Settings by ``create_app`` (nothing at import time)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from active_learning.settings import Settings
from active_learning.store import Store
from serving.catalog import Catalog
from serving.chips import ChipSource
from serving.events import EventOutcome, EventQueue, ReceivedWebhook, apply_webhook
from serving.labelstudio import pseudonym_secret, webhook_secret
from serving.metrics import ServiceMetrics
from serving.mlbackend import ChampionPredictor, Predictor
from serving.security import service_token

__all__ = ["Resources", "build_resources"]


@dataclass
class Resources:
    """The service's state.

    Attributes:
        settings: the one configuration object.
        store: the store of record.
        chips: the chip cache.
        catalog: the dated buildings (snapshots of the store).
        predictor: the model behind the ML backend.
        events: the queue that stores webhook events after they were answered.
        metrics: Prometheus metrics of this instance.
        token: the bearer token of write endpoints.
        webhook_secret: the shared secret Label Studio sends with webhooks.
        pseudonym_secret: key of the volunteer pseudonyms.
        webhook_sink: where verified webhooks go (default: ``events.submit``).
    """

    settings: Settings
    store: Store
    chips: ChipSource
    catalog: Catalog
    predictor: Predictor
    events: EventQueue
    metrics: ServiceMetrics
    token: str
    webhook_secret: str
    pseudonym_secret: bytes
    webhook_sink: Callable[[ReceivedWebhook], None]


def build_resources(
    settings: Settings,
    *,
    predictor: Predictor | None = None,
    webhook_sink: Callable[[ReceivedWebhook], None] | None = None,
) -> Resources:
    """Open the store (migrating it), point at the chip cache and the MLflow champion, derive the secrets."""
    store = Store.open(settings.database_url)
    cache = Path(settings.chip_cache or settings.work_dir / "chips")
    chips = ChipSource(cache)
    catalog = Catalog(store, chips)
    metrics = ServiceMetrics()

    def done(received: ReceivedWebhook, outcome: EventOutcome | None) -> None:
        catalog.invalidate()
        metrics.webhooks.labels(received.event.action, "stored" if outcome is not None else "failed").inc()

    events = EventQueue(lambda r: apply_webhook(store, r), done)
    resources = Resources(
        settings=settings,
        store=store,
        chips=chips,
        catalog=catalog,
        predictor=predictor or ChampionPredictor(settings.tracking(), cache),
        events=events,
        metrics=metrics,
        token=service_token(settings),
        webhook_secret=webhook_secret(settings),
        pseudonym_secret=pseudonym_secret(settings),
        webhook_sink=webhook_sink or events.submit,
    )
    metrics.watch(lambda: _state(resources))
    return resources


def _state(res: Resources) -> dict[str, dict[str, float]]:
    """What ``/metrics`` reports about the service's state at scrape time."""
    statuses: dict[str, float] = {}
    for b in res.catalog.snapshot().buildings.values():
        statuses[b.status] = statuses.get(b.status, 0) + 1
    gauges = {
        "chip_cache_hits": float(res.chips.hits),
        "chip_cache_misses": float(res.chips.misses),
        "webhook_queue_pending": float(res.events.pending),
    }
    return {"statuses": statuses, "gauges": gauges}
