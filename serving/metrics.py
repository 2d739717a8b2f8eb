"""Prometheus metrics of one app instance (prometheus-client, its own registry so test apps do not mix).

Requests are counted and timed by route template (``/api/buildings/{building_id}``, never the raw path, so ids
do not explode the label space); webhook events and verdicts by outcome; the dated buildings by status and the
chip render cache are read from the app's state when ``/metrics`` is scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "ServiceMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _StateCollector(Collector):
    def __init__(self, read: Callable[[], dict[str, dict[str, float]]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        values = self._read()
        statuses = GaugeMetricFamily(
            "striketracker_buildings", "Dated buildings by status (latest posterior)", labels=["status"]
        )
        for status, n in sorted(values.get("statuses", {}).items()):
            statuses.add_metric([status], n)
        yield statuses
        for name, help_text in (
            ("chip_cache_hits", "Chip PNGs served from the render cache"),
            ("chip_cache_misses", "Chip PNGs rendered"),
            ("webhook_queue_pending", "Webhook events received and not yet stored"),
        ):
            yield GaugeMetricFamily(
                f"striketracker_{name}", help_text, value=values.get("gauges", {}).get(name, 0)
            )


class ServiceMetrics:
    """The metrics of one service instance (state gauges join with :meth:`watch`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "striketracker_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "striketracker_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["route"],
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0),
            registry=self.registry,
        )
        self.webhooks = Counter(
            "striketracker_webhook_events",
            "Label Studio webhook events by action and outcome (stored, failed, rejected)",
            ["action", "outcome"],
            registry=self.registry,
        )
        self.verdicts = Counter(
            "striketracker_verdicts", "Researcher verdicts by outcome", ["outcome"], registry=self.registry
        )
        self.predictions = Counter(
            "striketracker_ml_predictions", "Tasks answered by /predict, by outcome", ["outcome"],
            registry=self.registry,
        )  # fmt: skip

    def watch(self, read_state: Callable[[], dict[str, dict[str, float]]]) -> None:
        """Report state at scrape time: ``read_state`` returns ``{"statuses": {...}, "gauges": {...}}``."""
        self.registry.register(_StateCollector(read_state))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count and time one request."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def exposition(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
