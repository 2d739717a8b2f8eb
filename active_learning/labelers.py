"""The labeler protocol: how a campaign talks to whoever labels (DESIGN section 3).

A :class:`Labeler` does three things: :meth:`~Labeler.push` review requests (idempotent on the request key),
:meth:`~Labeler.pull` what was answered since a cursor, and :meth:`~Labeler.withdraw` settled buildings from the
volunteers' queue. It owns no campaign state: the cursor it hands back, what was pushed (building, round, task
reference, status) and the campaign lock live in the store, so a labeler can be rebuilt at any time and a round
killed at any point resumes on rerun. Two implementations ship: the simulated volunteer pool
(:class:`active_learning.simulated_labeler.SimulatedPoolLabeler`) and Label Studio, through
:class:`QueueLabeler` over ``labeling.queue.LabelStudioQueue`` (built by ``serving`` and ``experiments``;
``active_learning`` never imports ``labeling``: the adapter reads the queue's records by their attributes).

Any other simulator, or a bridge to another platform, is named by import path: ``package.module:factory``
where ``factory(scenario_dir: Path, seed: int)`` returns an object with the :class:`Labeler` methods
(:func:`load_labeler`). A labeler signals that its platform is down by raising :class:`LabelerUnavailableError`
(or any exception with a true ``transient`` attribute, which :class:`QueueLabeler` translates); the loop then
waits and retries with backoff.
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from active_learning.errors import LabelerError, LabelerUnavailableError
from active_learning.schema import SOURCES, Annotation, State

__all__ = [
    "FailedReview",
    "LabeledReview",
    "Labeler",
    "PullBatch",
    "PushReceipt",
    "QueueLabeler",
    "ReviewRequest",
    "load_labeler",
]


@dataclass(frozen=True)
class ReviewRequest:
    """One more independent review of one building, asked of the labeler.

    Attributes:
        request_key: unique within the campaign (``<building>#<n>``: the building's n-th request); the labeler
            dedupes on it, so pushing a request twice creates one task.
        building_id: the building (its stable id, never a row position).
        dates: ISO dates of the building's timeline (what the task shows).
        priority: the acquisition score mapped to 0..1, higher = ask sooner.
        kind: why it was asked: ``seed``, ``acquired``, ``audit`` or ``estimate_audit``.
    """

    request_key: str
    building_id: str
    dates: tuple[str, ...]
    priority: float = 0.5
    kind: str = "acquired"


@dataclass(frozen=True)
class PushReceipt:
    """What a push did: the labeler's task reference for every request key pushed (new or already there)."""

    task_refs: Mapping[str, str]


@dataclass(frozen=True)
class LabeledReview:
    """One answer pulled from the labeler: the annotation (with its comment) and the task it answered."""

    annotation: Annotation
    task_ref: str | None = None


@dataclass(frozen=True)
class FailedReview:
    """Something the labeler received that could not become an annotation, kept with its payload.

    Attributes:
        external_id: its idempotency key, when it has one.
        building_id: the building it was about, as received.
        task_ref: the task it came from.
        reason: why it failed and how to fix it.
        payload: everything received, as JSON.
    """

    external_id: str
    building_id: str
    task_ref: str | None
    reason: str
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PullBatch:
    """What one pull brought.

    Attributes:
        reviews: answers since the cursor (new or edited), each at most once per cursor.
        retracted: external ids of answers deleted on the platform.
        failed: received items that could not be converted.
        gone: task reference -> building of tasks that vanished on the platform without being withdrawn by
            the campaign (deleted by a volunteer or an admin).
        cursor: where the next pull starts; stored with the answers in one transaction.
    """

    reviews: tuple[LabeledReview, ...]
    cursor: str
    retracted: tuple[str, ...] = ()
    failed: tuple[FailedReview, ...] = ()
    gone: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class Labeler(Protocol):
    """Whoever answers review requests: a platform, a simulator, a bridge."""

    name: str

    def push(self, requests: Sequence[ReviewRequest]) -> PushReceipt:
        """Make these requests available to volunteers; idempotent on ``request_key``."""
        ...

    def pull(self, cursor: str | None) -> PullBatch:
        """Everything answered, edited, deleted or failed since ``cursor`` (None: from the beginning)."""
        ...

    def withdraw(self, building_ids: Sequence[str]) -> None:
        """Take these buildings out of the volunteers' queue (settled); idempotent."""
        ...


class QueueLabeler:
    """A :class:`Labeler` over a platform queue such as ``labeling.queue.LabelStudioQueue``.

    The queue is duck-typed (``active_learning`` does not import ``labeling``):

    - ``queue.push(requests)`` takes objects with ``building_id``, ``dates`` and ``priority`` (a
      :class:`ReviewRequest` is one) and returns building id -> task id; a building has at most one task, so
      every request of a building maps to that task;
    - ``queue.pull(cursor)`` returns an object with ``annotations`` (each with ``building_id``, ``volunteer_id``,
      ``states`` as state names, ``submitted_at``, ``external_id``, ``task_id`` and optionally ``comment``),
      ``deleted`` (external ids), ``failed`` (each with ``external_id``, ``building_id``, ``task_id``,
      ``reason``, ``payload``), ``gone_tasks`` (task id -> building id) and ``cursor`` (a string);
    - ``queue.withdraw(building_ids)``.

    An exception with a true ``transient`` attribute means the platform is down and becomes
    :class:`LabelerUnavailableError`.

    Args:
        queue: the platform queue.
        name: the labeler's name in the store (its cursor's key).
        source: the annotations' source (``labelstudio``).
    """

    def __init__(self, queue: Any, *, name: str = "labelstudio", source: str = "labelstudio") -> None:
        if source not in SOURCES:
            raise LabelerError(f"source {source!r} is not one of {list(SOURCES)}")
        for method in ("push", "pull", "withdraw"):
            if not callable(getattr(queue, method, None)):
                raise LabelerError(
                    f"{type(queue).__name__} has no {method}() method; it cannot back a labeler"
                )
        self.queue = queue
        self.name = name
        self.source = source

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            if getattr(exc, "transient", False):
                raise LabelerUnavailableError(
                    f"{self.name}: {what} failed, the platform is unavailable: {exc}"
                ) from exc
            raise

    def push(self, requests: Sequence[ReviewRequest]) -> PushReceipt:
        tasks = self._call("push", lambda: self.queue.push(list(requests)))
        refs = {r.request_key: str(tasks[r.building_id]) for r in requests if r.building_id in tasks}
        missing = [r.request_key for r in requests if r.building_id not in tasks]
        if missing:
            raise LabelerError(
                f"{self.name}: push returned no task for requests {missing[:5]}; rerun the round"
            )
        return PushReceipt(refs)

    def pull(self, cursor: str | None) -> PullBatch:
        result = self._call("pull", lambda: self.queue.pull(cursor))
        reviews = []
        failed = [
            FailedReview(
                str(getattr(f, "external_id", "")),
                str(getattr(f, "building_id", "")),
                _ref(getattr(f, "task_id", None)),
                str(getattr(f, "reason", "")),
                dict(getattr(f, "payload", {}) or {}),
            )
            for f in getattr(result, "failed", ())
        ]
        for p in result.annotations:
            try:
                states = tuple(State.parse(s) for s in p.states)
            except ValueError as exc:
                failed.append(
                    FailedReview(str(p.external_id), str(p.building_id), _ref(getattr(p, "task_id", None)),
                                 f"unknown state ({exc}); fix the labeling config's choices",
                                 {"states": [str(s) for s in p.states], "volunteer_id": str(p.volunteer_id)})
                )  # fmt: skip
                continue
            when = p.submitted_at if p.submitted_at.tzinfo else p.submitted_at.replace(tzinfo=dt.UTC)
            annotation = Annotation(
                building_id=str(p.building_id),
                volunteer_id=str(p.volunteer_id),
                source=self.source,  # type: ignore[arg-type]
                states=states,
                submitted_at=when,
                external_id=str(p.external_id),
                comment=str(getattr(p, "comment", "") or ""),
            )
            reviews.append(LabeledReview(annotation, _ref(getattr(p, "task_id", None))))
        gone = {str(t): str(b) for t, b in dict(getattr(result, "gone_tasks", {}) or {}).items()}
        return PullBatch(tuple(reviews), str(result.cursor), tuple(result.deleted), tuple(failed), gone)

    def withdraw(self, building_ids: Sequence[str]) -> None:
        self._call("withdraw", lambda: self.queue.withdraw(list(building_ids)))


def _ref(task_id: object) -> str | None:
    return None if task_id in (None, 0, "") else str(task_id)


def load_labeler(
    spec: str, scenario_dir: Path | None, seed: int, *, state_dir: Path | None = None
) -> Labeler:
    """The labeler named by ``spec``.

    Args:
        spec: ``simulated`` (the simulated volunteer pool over the scenario's truth) or ``package.module:factory``
            (``factory(scenario_dir, seed)`` returns a :class:`Labeler`).
        scenario_dir: the scenario folder (truth for simulators).
        seed: the labeler's seed.
        state_dir: where the built-in simulated pool keeps its platform state between processes (None: in
            memory only).

    Raises:
        LabelerError: the spec cannot be imported, the factory fails, or what it returns is not a labeler.
    """
    if spec == "simulated":
        from active_learning.simulated_labeler import SimulatedPoolLabeler

        if scenario_dir is None:
            raise LabelerError("the simulated labeler needs the scenario folder (its truth); pass --scenario")
        state = None if state_dir is None else Path(state_dir) / "simulated-platform.json"
        return SimulatedPoolLabeler.from_scenario(scenario_dir, seed, state_path=state)
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise LabelerError(
            f"labeler {spec!r} is neither 'simulated' nor 'package.module:factory'; name a factory by import path"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LabelerError(
            f"labeler {spec!r}: cannot import {module_name!r} ({exc}); check the module path"
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise LabelerError(f"labeler {spec!r}: {module_name} has no callable {attr!r}")
    try:
        inspect.signature(factory).bind(scenario_dir, seed)
    except TypeError:
        raise LabelerError(
            f"labeler {spec!r}: the factory must take (scenario_dir: Path, seed: int), it takes "
            f"{inspect.signature(factory)}"
        ) from None
    labeler = factory(scenario_dir, seed)
    missing = [m for m in ("push", "pull", "withdraw") if not callable(getattr(labeler, m, None))]
    if missing:
        raise LabelerError(
            f"labeler {spec!r}: the factory returned a {type(labeler).__name__} without {missing}"
        )
    if not getattr(labeler, "name", ""):
        raise LabelerError(
            f"labeler {spec!r}: the object it returned has no 'name' (its cursor's key in the store)"
        )
    return labeler  # type: ignore[no-any-return]
