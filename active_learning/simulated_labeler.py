"""The simulated volunteer pool as a :class:`~active_learning.labelers.Labeler`: a stand-in labeling platform.

Pushed requests become open tasks; at each pull every open task is answered by one volunteer of the pool who
has not reviewed that building yet (drawn by activity), with :func:`active_learning.volunteers.answer` (or the
``answer`` function given), and the answers are delivered after the cursor (their position in the platform's
answer log). Withdrawn tasks are never answered. The volunteer and the answer of a request depend only on the
seed, the request key and who reviewed the building before, so the same request gets the same answer in every
arm of a benchmark (``fixed5``'s third review of a building is the ``verify`` arm's third review of it too).

The platform's own state (tasks, answer log, reviewers) is what a real platform keeps on its server: in memory,
or in a JSON file (``state_path``) written atomically after every change, so it outlives the loop process (the
CLI runs one round per process; a loop killed with ``kill -9`` finds the platform as it left it).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from active_learning.labelers import LabeledReview, PullBatch, PushReceipt, ReviewRequest
from active_learning.schema import Annotation, State
from active_learning.truth import BuildingTruth, load_truth
from active_learning.volunteers import PoolConfig, Volunteer, VolunteerKind, VolunteerPool, answer

__all__ = ["CAMPAIGN_POOL", "AnswerFn", "SimulatedPoolLabeler"]

AnswerFn = Callable[[BuildingTruth, Volunteer, np.random.Generator], tuple[State, ...]]
"""How a volunteer answers one building: (truth, volunteer, seeded generator) -> a state per date."""

CAMPAIGN_POOL = PoolConfig(
    shares=(
        (VolunteerKind.GOOD, 0.45),
        (VolunteerKind.MEDIOCRE, 0.42),
        (VolunteerKind.CARELESS, 0.10),
        (VolunteerKind.ADVERSARIAL, 0.03),
    )
)
"""The benchmark's pool (issue #12): 10% careless and 3% adversarial volunteers, the rest good or mediocre."""

_EPOCH = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


def _profile_answer(
    truth: BuildingTruth, volunteer: Volunteer, rng: np.random.Generator
) -> tuple[State, ...]:
    return answer(truth, volunteer.profile, rng)


class SimulatedPoolLabeler:
    """Simulated volunteers behind the labeler protocol.

    Args:
        truths: what a perfect observer would report for every building.
        pool: the volunteers.
        seed: seed of volunteer choice and answers.
        answer: how a volunteer answers (default: the pool's error model, ``active_learning.volunteers``).
        state_path: JSON file of the platform state (None: in memory).
        name: the labeler's name (its cursor's key in the store).
    """

    def __init__(
        self,
        truths: Sequence[BuildingTruth],
        pool: VolunteerPool,
        seed: int,
        *,
        answer: AnswerFn = _profile_answer,
        state_path: Path | None = None,
        name: str = "simulated",
    ) -> None:
        self.truths = {t.building_id: t for t in truths}
        self.pool = pool
        self.seed = seed
        self.answer = answer
        self.state_path = state_path
        self.name = name
        self._activity = np.array([v.activity for v in pool.volunteers], dtype=float)
        self._state: dict[str, Any] = {"seed": seed, "tasks": {}, "log": [], "reviewers": {}}
        if state_path is not None and state_path.exists():
            self._state = json.loads(state_path.read_text())
            if self._state.get("seed") != seed:
                raise ValueError(
                    f"{state_path}: the simulated platform was created with seed {self._state.get('seed')}, "
                    f"not {seed}; delete it or use its seed"
                )

    @classmethod
    def from_scenario(
        cls,
        scenario_dir: Path,
        seed: int,
        *,
        config: PoolConfig = CAMPAIGN_POOL,
        pool_size: int | None = None,
        answer: AnswerFn = _profile_answer,
        state_path: Path | None = None,
        name: str = "simulated",
    ) -> SimulatedPoolLabeler:
        """The pool over a scenario folder's truth (one volunteer per 10 buildings, at least 40)."""
        truths = load_truth(scenario_dir).building_truths()
        pool = VolunteerPool.create(pool_size or max(40, len(truths) // 10), seed, config)
        return cls(truths, pool, seed, answer=answer, state_path=state_path, name=name)

    # -- the protocol ------------------------------------------------------------------------------------------

    def push(self, requests: Sequence[ReviewRequest]) -> PushReceipt:
        tasks: dict[str, dict[str, str]] = self._state["tasks"]
        refs: dict[str, str] = {}
        changed = False
        for r in requests:
            if r.building_id not in self.truths:
                raise ValueError(f"simulated platform: building {r.building_id!r} is not in the scenario")
            if r.request_key not in tasks:
                tasks[r.request_key] = {"building_id": r.building_id, "status": "open"}
                changed = True
            refs[r.request_key] = f"task:{r.request_key}"
        if changed:
            self._save()
        return PushReceipt(refs)

    def pull(self, cursor: str | None) -> PullBatch:
        start = int(cursor) if cursor else 0
        log: list[dict[str, Any]] = self._state["log"]
        opened = [k for k, t in self._state["tasks"].items() if t["status"] == "open"]
        for key in opened:
            log.append(self._answer(key))
            self._state["tasks"][key]["status"] = "answered"
        if opened:
            self._save()
        reviews = tuple(_review(entry) for entry in log[start:])
        return PullBatch(reviews=reviews, cursor=str(len(log)))

    def withdraw(self, building_ids: Sequence[str]) -> None:
        ids = set(building_ids)
        changed = False
        for task in self._state["tasks"].values():
            if task["building_id"] in ids and task["status"] == "open":
                task["status"] = "withdrawn"
                changed = True
        if changed:
            self._save()

    # -- inspection (tests, benchmarks) ------------------------------------------------------------------------

    def tasks(self) -> dict[str, dict[str, str]]:
        """Request key -> {building_id, status} of every task the platform holds."""
        return {k: dict(v) for k, v in self._state["tasks"].items()}

    def answered(self) -> list[str]:
        """External ids of every answer the platform produced, in order."""
        return [str(e["external_id"]) for e in self._state["log"]]

    def kinds(self) -> dict[str, VolunteerKind]:
        """Volunteer id -> kind (for evaluation; never given to the aggregator)."""
        return self.pool.kinds()

    # -- internals ---------------------------------------------------------------------------------------------

    def _answer(self, request_key: str) -> dict[str, Any]:
        building = self._state["tasks"][request_key]["building_id"]
        truth = self.truths[building]
        reviewed = set(self._state["reviewers"].get(building, []))
        rng = np.random.default_rng([self.seed, zlib.crc32(request_key.encode()), 0x5A])
        free = np.array([v.volunteer_id not in reviewed for v in self.pool.volunteers])
        if not free.any():
            free[:] = True  # every volunteer has seen it: the pool is too small for this many reviews
        weights = np.where(free, self._activity, 0.0)
        volunteer = self.pool.volunteers[int(rng.choice(len(weights), p=weights / weights.sum()))]
        states = self.answer(truth, volunteer, rng)
        self._state["reviewers"].setdefault(building, []).append(volunteer.volunteer_id)
        n = len(self._state["log"])
        return {
            "building_id": building,
            "volunteer_id": volunteer.volunteer_id,
            "states": [State(s).label for s in states],
            "submitted_at": (_EPOCH + dt.timedelta(minutes=n)).isoformat(),
            "external_id": f"sim:{self.seed}:{request_key}",
            "task_ref": f"task:{request_key}",
        }

    def _save(self) -> None:
        if self.state_path is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_name(f".{self.state_path.name}.tmp")
        tmp.write_text(json.dumps(self._state))
        os.replace(tmp, self.state_path)


def _review(entry: dict[str, Any]) -> LabeledReview:
    annotation = Annotation(
        building_id=entry["building_id"],
        volunteer_id=entry["volunteer_id"],
        source="simulated",
        states=tuple(State.parse(s) for s in entry["states"]),
        submitted_at=dt.datetime.fromisoformat(entry["submitted_at"]),
        external_id=entry["external_id"],
    )
    return LabeledReview(annotation, entry.get("task_ref"))
