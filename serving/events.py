"""Label Studio webhooks into the store of record: the one way a webhook's annotations reach the store.

Label Studio (without Redis) delivers each webhook once, synchronously, with a 1 s timeout and no retry, so the
receiver only verifies the secret and reads the body (:func:`read_webhook`) and hands the result to an
:class:`EventQueue`; one worker thread applies webhooks to the store in arrival order (:func:`apply_webhook`),
which also keeps writes to a SQLite store from contending with each other.

Applying is one :meth:`active_learning.store.Store.ingest` transaction, with the same mapping as the pull
(:func:`serving.sync.to_annotation`, :func:`serving.sync.quarantine_item`): annotations are keyed by their
external id (a repeated webhook is ``unchanged``), an edited annotation supersedes the stored one (kept as a
revision), a deleted one is retracted (kept, out of aggregation; a late edit does not undo it), an annotation
that fails conversion is quarantined with its raw JSON, and anything the store refuses goes to its quarantine
with the reason. A failure is logged (its type and the counts, never the annotation) and left to the periodic
``striketracker labelstudio sync`` pass (:mod:`serving.sync`), which reconciles whatever a lost webhook missed.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from active_learning.errors import ActiveLearningError
from active_learning.store import Store
from labeling import WebhookEvent, parse_webhook
from labeling.queue import FailedAnnotation, failed_from_webhook
from serving.sync import RETRACT_REASON, quarantine_item, to_annotation

__all__ = [
    "EventOutcome",
    "EventQueue",
    "ReceivedWebhook",
    "apply_webhook",
    "read_webhook",
    "store_webhook",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReceivedWebhook:
    """One verified webhook as read: its parsed event and, when its annotation failed conversion, the raw JSON.

    Attributes:
        event: the parsed event (converted annotations, deleted external ids).
        failed: the annotation that could not be converted, to quarantine; None otherwise.
    """

    event: WebhookEvent
    failed: FailedAnnotation | None = None

    @property
    def stores_anything(self) -> bool:
        """Whether applying it writes to the store (other actions are acknowledged and ignored)."""
        return bool(self.event.annotations or self.event.deleted or self.failed)


@dataclass(frozen=True)
class EventOutcome:
    """What one webhook did to the store (counts of external ids)."""

    action: str
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    retracted: int = 0
    stale: int = 0
    kept_retracted: int = 0


def read_webhook(body: bytes, *, secret: bytes) -> ReceivedWebhook:
    """Parse a webhook body whose shared secret was verified.

    Args:
        body: the request body.
        secret: key of the volunteer pseudonyms.

    Raises:
        labeling.WebhookPayloadError: the body is not a Label Studio webhook.
    """
    event = parse_webhook(body, secret=secret)
    failed = None if event.annotations else failed_from_webhook(body, secret=secret)
    return ReceivedWebhook(event, failed)


def apply_webhook(store: Store, received: ReceivedWebhook) -> EventOutcome:
    """Write one webhook into the store in one transaction (module docstring)."""
    event = received.event
    report = store.ingest(
        [to_annotation(a) for a in event.annotations],
        allow_updates=True,
        retract=event.deleted,
        retract_reason=RETRACT_REASON,
        quarantine=[quarantine_item(received.failed)] if received.failed is not None else [],
    )
    return EventOutcome(
        action=event.action,
        inserted=len(report.inserted),
        updated=len(report.updated),
        unchanged=len(report.unchanged),
        quarantined=len(report.quarantined),
        retracted=len(report.retracted),
        stale=len(report.stale),
        kept_retracted=len(report.kept_retracted),
    )


def store_webhook(store: Store, body: bytes, *, secret: bytes) -> EventOutcome:
    """Read a verified webhook body and write it into the store at once (:func:`read_webhook`, then
    :func:`apply_webhook`); the service queues instead, to answer before the write."""
    return apply_webhook(store, read_webhook(body, secret=secret))


class EventQueue:
    """Applies webhooks one at a time on a worker thread, in the order they were received.

    Args:
        apply: what to do with one webhook (returns its outcome).
        done: called with each outcome, or with ``None`` when applying failed (metrics, catalog refresh).
    """

    def __init__(
        self,
        apply: Callable[[ReceivedWebhook], EventOutcome],
        done: Callable[[ReceivedWebhook, EventOutcome | None], None] = lambda r, o: None,
    ) -> None:
        self._apply = apply
        self._done = done
        self._queue: queue.Queue[ReceivedWebhook | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the worker (idempotent)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="webhook-events", daemon=True)
                self._thread.start()

    def submit(self, received: ReceivedWebhook) -> None:
        """Queue one webhook; starts the worker if it is not running."""
        self.start()
        self._queue.put(received)

    def join(self) -> None:
        """Block until every webhook submitted so far has been applied (tests and shutdown)."""
        self._queue.join()

    def stop(self) -> None:
        """Apply what is queued, then stop the worker."""
        with self._lock:
            thread = self._thread
            self._thread = None
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join()

    @property
    def pending(self) -> int:
        """Webhooks received and not yet applied."""
        return self._queue.qsize()

    def _run(self) -> None:
        while True:
            received = self._queue.get()
            try:
                if received is None:
                    return
                self._apply_one(received)
            finally:
                self._queue.task_done()

    def _apply_one(self, received: ReceivedWebhook) -> None:
        event = received.event
        try:
            outcome = self._apply(received)
        except (ActiveLearningError, OSError) as exc:
            logger.error(
                "webhook %s (project %s) not stored: %s; the next `labelstudio sync` reconciles it",
                event.action,
                event.project_id,
                type(exc).__name__,
            )
            self._done(received, None)
        except Exception as exc:  # the worker must survive anything one webhook does
            logger.error(
                "webhook %s (project %s) not stored: unexpected %s",
                event.action,
                event.project_id,
                type(exc).__name__,
            )
            self._done(received, None)
        else:
            if outcome.quarantined:
                logger.warning(
                    "webhook %s: %d annotations quarantined (see the store's quarantine)",
                    event.action,
                    outcome.quarantined,
                )
            self._done(received, outcome)
