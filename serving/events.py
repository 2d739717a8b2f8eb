"""Label Studio webhook events into the store of record, applied after the webhook has been answered.

Label Studio (without Redis) delivers each webhook once, synchronously, with a 1 s timeout and no retry, so the
receiver only verifies and parses the event and hands it to an :class:`EventQueue`; one worker thread applies
events to the store in arrival order (:func:`apply_event`), which also keeps writes to a SQLite store from
contending with each other. Applying is idempotent: annotations are keyed by their external id (a repeated
event is ``unchanged``), an edited annotation supersedes the stored one (``allow_updates``), a deleted one is
retracted (kept, out of aggregation), and anything the store refuses goes to its quarantine with the reason.
A failure is logged (its type and the counts, never the annotation) and left to the periodic
``striketracker labelstudio sync`` pass, which reconciles whatever a lost webhook missed.

Note for the campaign branch: this is the webhook -> store step the service needs until ``serving/sync.py``
grows its own; both must stay equivalent (same ``to_annotation``, same retraction reason).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from active_learning.errors import ActiveLearningError
from active_learning.store import Store
from labeling import WebhookEvent
from serving.sync import to_annotation

__all__ = ["RETRACTED_REASON", "EventOutcome", "EventQueue", "apply_event"]

logger = logging.getLogger(__name__)

RETRACTED_REASON = "deleted in Label Studio"


@dataclass(frozen=True)
class EventOutcome:
    """What one event did to the store (counts of external ids)."""

    action: str
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    retracted: int = 0


def apply_event(store: Store, event: WebhookEvent) -> EventOutcome:
    """Store one webhook event's annotations (idempotent) and retract its deleted ones."""
    inserted = updated = unchanged = quarantined = retracted = 0
    if event.annotations:
        report = store.add_annotations([to_annotation(a) for a in event.annotations], allow_updates=True)
        inserted, updated = len(report.inserted), len(report.updated)
        unchanged, quarantined = len(report.unchanged), len(report.quarantined)
    if event.deleted:
        retracted = len(store.retract(event.deleted, RETRACTED_REASON))
    return EventOutcome(event.action, inserted, updated, unchanged, quarantined, retracted)


class EventQueue:
    """Applies events one at a time on a worker thread, in the order they were received.

    Args:
        apply: what to do with one event (returns its outcome).
        done: called with each outcome, or with ``None`` and the event when applying failed (metrics).
    """

    def __init__(
        self,
        apply: Callable[[WebhookEvent], EventOutcome],
        done: Callable[[WebhookEvent, EventOutcome | None], None] = lambda e, o: None,
    ) -> None:
        self._apply = apply
        self._done = done
        self._queue: queue.Queue[WebhookEvent | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the worker (idempotent)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="webhook-events", daemon=True)
                self._thread.start()

    def submit(self, event: WebhookEvent) -> None:
        """Queue one event; starts the worker if it is not running."""
        self.start()
        self._queue.put(event)

    def join(self) -> None:
        """Block until every event submitted so far has been applied (tests and shutdown)."""
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
        return self._queue.qsize()

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            try:
                if event is None:
                    return
                try:
                    outcome = self._apply(event)
                except (ActiveLearningError, OSError) as exc:
                    logger.error(
                        "webhook %s (project %s) not stored: %s; the next `labelstudio sync` reconciles it",
                        event.action,
                        event.project_id,
                        type(exc).__name__,
                    )
                    self._done(event, None)
                except Exception as exc:  # the worker must survive anything one event does
                    logger.error(
                        "webhook %s (project %s) not stored: unexpected %s",
                        event.action,
                        event.project_id,
                        type(exc).__name__,
                    )
                    self._done(event, None)
                else:
                    if outcome.quarantined:
                        logger.warning(
                            "webhook %s: %d annotations quarantined (see the store's quarantine)",
                            event.action,
                            outcome.quarantined,
                        )
                    self._done(event, outcome)
            finally:
                self._queue.task_done()
