"""Simulated volunteers who answer through the real Label Studio API, each as their own Label Studio user.

:class:`LabelStudioVolunteers` is a :class:`~active_learning.labelers.Labeler` for the demo. Review requests go to
a real Label Studio project (:class:`labeling.queue.LabelStudioQueue`, one task per building), and answers come
back from it, exactly as in a campaign with people. Who answers and what they answer is decided by the simulated
volunteer pool (:class:`active_learning.simulated_labeler.SimulatedPoolLabeler`, the benchmark's pool with its
careless and adversarial share): before every pull, each request the pool would have answered is submitted to
Label Studio as an annotation of the request's task, by the pool's volunteer, signed up as a Label Studio user
through the organization's invite link (:func:`labeling.signup_volunteer`) and using that user's own token. The
campaign then reads the annotations back through the queue, so what it stores went through Label Studio's API,
its webhooks (to the service) and the labeling config's conversion, with Label Studio user ids as volunteers.

The answer is submitted in the project's labeling config: the compact one (first damaged date, grade, hidden
dates) or the per-date one. The simulated platform state lives in memory: the demo runs its campaign in one
process and starts from a fresh project, so nothing needs to outlive it.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from active_learning.labelers import PullBatch, PushReceipt, QueueLabeler, ReviewRequest
from active_learning.simulated_labeler import SimulatedPoolLabeler
from labeling import (
    LabelStudioAPIError,
    LabelStudioClient,
    compact_answer,
    compact_result,
    signup_volunteer,
)
from labeling.convert import states_to_result
from labeling.queue import LabelStudioQueue

__all__ = ["BridgeCounts", "LabelStudioVolunteers"]


@dataclass
class BridgeCounts:
    """What the bridge did so far.

    Attributes:
        submitted: annotations submitted to Label Studio by simulated volunteers.
        users: Label Studio users the volunteers signed up as.
        task_gone: answers not submitted because their task was deleted (the building was withdrawn).
        signup_s / submit_s: seconds spent signing up and submitting (summed over the volunteers).
    """

    submitted: int = 0
    users: int = 0
    task_gone: int = 0
    signup_s: float = 0.0
    submit_s: float = 0.0


class LabelStudioVolunteers:
    """The simulated pool's volunteers answering the campaign's Label Studio tasks (module docstring).

    Args:
        queue: the campaign's Label Studio project as a queue (built with the admin's client).
        pool: decides who answers which request, and what.
        invite_token: the organization's invite token (volunteers sign up with it).
        email_domain: volunteers' e-mail addresses are ``<pool id>@<email_domain>``.
        password: how a volunteer's password is derived from their pool id.
        on_submit: called after every submitted annotation (progress).
        workers: volunteers submitting at the same time.
    """

    name = "labelstudio"

    def __init__(
        self,
        queue: LabelStudioQueue,
        pool: SimulatedPoolLabeler,
        *,
        invite_token: str,
        email_domain: str = "volunteers.striketracker.local",
        password: Callable[[str], str],
        on_submit: Callable[[BridgeCounts], None] | None = None,
        workers: int = 4,
    ) -> None:
        self.queue = queue
        self.labeler = QueueLabeler(queue)
        self.pool = pool
        self.invite_token = invite_token
        self.email_domain = email_domain
        self.password = password
        self.on_submit = on_submit
        self.counts = BridgeCounts()
        self.workers = workers
        self._lock = threading.Lock()
        self._tasks: dict[str, int] = {}
        self._dates: dict[str, tuple[str, ...]] = {}
        self._clients: dict[str, LabelStudioClient] = {}
        self._pool_cursor: str | None = None
        self._kind = ""

    # -- the labeler protocol ----------------------------------------------------------------------------------

    def push(self, requests: Sequence[ReviewRequest]) -> PushReceipt:
        receipt = self.labeler.push(requests)
        self._tasks.update({key: int(ref) for key, ref in receipt.task_refs.items()})
        self._dates.update({r.building_id: tuple(r.dates) for r in requests})
        self.pool.push(requests)
        return receipt

    def pull(self, cursor: str | None) -> PullBatch:
        self._answer_open_requests()
        return self.labeler.pull(cursor)

    def withdraw(self, building_ids: Sequence[str]) -> None:
        self.pool.withdraw(building_ids)
        self.labeler.withdraw(building_ids)

    # -- the volunteers ----------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every volunteer's API client."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def _answer_open_requests(self) -> None:
        """Let the pool answer every open request, and submit each answer as its volunteer.

        Volunteers submit side by side (``workers`` threads, each volunteer's answers in order in one thread),
        as people do: Label Studio serves them concurrently, and each submission waits on its webhook.
        """
        batch = self.pool.pull(self._pool_cursor)
        answers: dict[str, list[tuple[int, list[dict[str, object]]]]] = defaultdict(list)
        for review in batch.reviews:
            task_id = self._tasks.get((review.task_ref or "").removeprefix("task:"))
            if task_id is None:
                continue
            a = review.annotation
            answers[a.volunteer_id].append(
                (task_id, self._result([s.label for s in a.states], a.building_id))
            )
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for done in [pool.submit(self._submit_all, v, items) for v, items in answers.items()]:
                done.result()
        self._pool_cursor = batch.cursor

    def _submit_all(self, volunteer_id: str, items: list[tuple[int, list[dict[str, object]]]]) -> None:
        client = self._volunteer(volunteer_id)
        for task_id, result in items:
            started = time.perf_counter()
            try:
                client.submit(task_id, result)
            except LabelStudioAPIError as exc:
                if exc.status != 404:
                    raise
                with self._lock:
                    self.counts.task_gone += 1  # withdrawn between the pool's choice and the submission
                continue
            with self._lock:
                self.counts.submitted += 1
                self.counts.submit_s += time.perf_counter() - started
                if self.on_submit is not None:
                    self.on_submit(self.counts)

    def _result(self, states: list[str], building_id: str) -> list[dict[str, object]]:
        """The answer in the project's labeling config."""
        if not self._kind:
            self._kind = self.queue.client.config_kind(self.queue.project_id)
        if self._kind == "compact":
            return compact_result(compact_answer(states), self._dates[building_id])
        return states_to_result(states)

    def _volunteer(self, volunteer_id: str) -> LabelStudioClient:
        """The volunteer's own API client, signing them up on first use."""
        client = self._clients.get(volunteer_id)
        if client is None:
            started = time.perf_counter()
            base = self.queue.client.base_url
            token = signup_volunteer(
                base,
                self.invite_token,
                f"{volunteer_id}@{self.email_domain}",
                self.password(volunteer_id),
            )
            client = LabelStudioClient(base, token)
            with self._lock:
                self._clients[volunteer_id] = client
                self.counts.users += 1
                self.counts.signup_s += time.perf_counter() - started
        return client
