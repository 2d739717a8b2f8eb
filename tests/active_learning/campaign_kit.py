"""Small, seeded campaigns for the loop tests: synthetic truths, the simulated pool, a model that does not train,
and a labeler wrapper that misbehaves on request."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from active_learning.champion import ModelOutput, PromotionOutcome, TrainingSet
from active_learning.errors import LabelerUnavailableError
from active_learning.labelers import LabeledReview, PullBatch, PushReceipt, ReviewRequest
from active_learning.loop import Campaign, CampaignConfig
from active_learning.schema import Annotation, State
from active_learning.simulated_labeler import CAMPAIGN_POOL, SimulatedPoolLabeler
from active_learning.store import Store
from active_learning.truth import BuildingTruth
from active_learning.volunteers import VolunteerPool, synthetic_truths

N_DATES = 6
DATES = tuple(dt.date(2017, 2, 1) + dt.timedelta(days=30 * i) for i in range(N_DATES))


def truths(n: int = 40, seed: int = 5) -> tuple[BuildingTruth, ...]:
    return synthetic_truths(n, N_DATES, seed=seed, cloud_rate=0.05)


def pool_labeler(
    ts: Sequence[BuildingTruth], seed: int = 5, state_path: Path | None = None
) -> SimulatedPoolLabeler:
    return SimulatedPoolLabeler(
        ts, VolunteerPool.create(30, seed, CAMPAIGN_POOL), seed, state_path=state_path
    )


def open_store(path: Path | str, ts: Sequence[BuildingTruth]) -> Store:
    """A store with the buildings registered: a SQLite file at ``path``, or any store URL."""
    store = Store.open(path if isinstance(path, str) else f"sqlite:///{path}")
    Campaign.register_buildings(
        store, [t.building_id for t in ts], DATES, {t.building_id: str(i % 4) for i, t in enumerate(ts)}
    )
    return store


def config(**over: object) -> CampaignConfig:
    base: dict[str, object] = {"name": "t", "batch_size": 10, "seed_size": 12, "seed": 5, "first_model_labels": 8,
                               "retrain_min_labels": 8, "min_promotion_audit": 2}  # fmt: skip
    base.update(over)
    return CampaignConfig(**base)  # type: ignore[arg-type]


class FakeModel:
    """A :class:`~active_learning.champion.CampaignModel` that does not train: its posterior puts ``accuracy`` on
    the true gap (the rest on the neighbours) for every building; versions count the trainings."""

    def __init__(
        self, ts: Sequence[BuildingTruth], accuracy: float = 0.9, state_path: Path | None = None
    ) -> None:
        self.truths = list(ts)
        self.accuracy = accuracy
        self.state_path = state_path  # a registry outlives the loop process: keep the champion in a file
        self._champion: str | None = None
        self.trained: list[tuple[int, str | None]] = []
        if state_path is not None and state_path.exists():
            saved = json.loads(state_path.read_text())
            self._champion, self.trained = saved["champion"], [tuple(t) for t in saved["trained"]]

    def _save(self) -> None:
        if self.state_path is not None:
            self.state_path.write_text(json.dumps({"champion": self._champion, "trained": self.trained}))

    def champion(self) -> str | None:
        return self._champion

    def predict(self, version: str) -> ModelOutput:
        g = N_DATES + 1
        probs = np.full((len(self.truths), g), 1e-4)
        for i, t in enumerate(self.truths):
            probs[i, t.true_gap] = self.accuracy
            for j in (t.true_gap - 1, t.true_gap + 1):
                if 0 <= j < g:
                    probs[i, j] = (1 - self.accuracy) / 2
        probs /= probs.sum(axis=1, keepdims=True)
        return ModelOutput(
            version, tuple(t.building_id for t in self.truths), probs, np.full(len(self.truths), 0.1)
        )

    def train(self, labels: TrainingSet, *, warm_start: str | None, run_name: str) -> str:
        assert np.allclose(labels.probs.sum(axis=1), 1.0, atol=1e-4)
        self.trained.append((len(labels.building_ids), warm_start))
        self._save()
        return f"fake/{len(self.trained)}"

    def promote(self, candidate: str, audit_ids: Sequence[str], audit_gaps: np.ndarray) -> PromotionOutcome:
        self._champion = candidate
        self._save()
        return PromotionOutcome(
            True, candidate, f"{candidate} promoted on {len(audit_ids)} audit buildings", 1.0, 0.9
        )

    def first_champion(self, candidate: str) -> PromotionOutcome:
        self._champion = candidate
        self._save()
        return PromotionOutcome(True, candidate, f"{candidate} is the first champion", 0.0, None)


@dataclass
class Faults:
    """What :class:`FaultyLabeler` does wrong, and when (call counts start at 1)."""

    down_pulls: set[int] = field(default_factory=set)  # pull calls that fail: the platform is down
    down_pushes: set[int] = field(default_factory=set)
    unsolicited: dict[int, Annotation] = field(
        default_factory=dict
    )  # pull call -> an answer for a building never sent
    duplicate_on: set[int] = field(default_factory=set)  # pull calls that deliver their first answer twice
    repeat_reviewer_on: set[int] = field(
        default_factory=set
    )  # pull calls that add a second review by a reviewer
    extra: dict[int, Callable[[Store], Annotation | None]] = field(
        default_factory=dict
    )  # pull call -> a late answer
    gone_on: dict[int, int] = field(default_factory=dict)  # pull call -> delete this many open tasks
    answer_gone_on: set[int] = field(
        default_factory=set
    )  # pull calls that bring an answer for each deleted task


class FaultyLabeler:
    """A labeler that wraps the simulated pool and misbehaves as :class:`Faults` says."""

    def __init__(self, inner: SimulatedPoolLabeler, faults: Faults, store: Store | None = None) -> None:
        self.inner = inner
        self.faults = faults
        self.store = store
        self.name = inner.name
        self.pulls = 0
        self.pushes = 0
        self.gone: dict[str, str] = {}

    def push(self, requests: Sequence[ReviewRequest]) -> PushReceipt:
        self.pushes += 1
        if self.pushes in self.faults.down_pushes:
            raise LabelerUnavailableError(f"push {self.pushes}: connection refused")
        return self.inner.push(requests)

    def withdraw(self, building_ids: Sequence[str]) -> None:
        self.inner.withdraw(building_ids)

    def pull(self, cursor: str | None) -> PullBatch:
        self.pulls += 1
        n = self.pulls
        if n in self.faults.down_pulls:
            raise LabelerUnavailableError(f"pull {n}: 503 Service Unavailable")
        gone: dict[str, str] = {}
        if n in self.faults.gone_on:  # the platform deletes open tasks before anyone answers them
            open_tasks = [(k, t) for k, t in self.inner._state["tasks"].items() if t["status"] == "open"]
            for key, task in open_tasks[: self.faults.gone_on[n]]:
                task["status"] = "deleted"
                gone[f"task:{key}"] = task["building_id"]
        self.gone.update(gone)
        batch = self.inner.pull(cursor)
        reviews = list(batch.reviews)
        if n in self.faults.duplicate_on and reviews:
            reviews.append(reviews[0])
        if n in self.faults.repeat_reviewer_on and reviews:
            first = reviews[0].annotation
            again = replace(
                first, external_id=first.external_id + ":again", states=tuple(reversed(first.states))
            )
            reviews.append(LabeledReview(again, reviews[0].task_ref))
        if n in self.faults.answer_gone_on:  # answered in a volunteer's open tab before the task was deleted
            for i, (ref, building) in enumerate(sorted(self.gone.items())):
                reviews.append(LabeledReview(stray(building, f"v-tab-{i}", f"tab:{ref}"), ref))
        if n in self.faults.unsolicited:
            reviews.append(LabeledReview(self.faults.unsolicited[n], "task:nowhere"))
        if n in self.faults.extra and self.store is not None:
            late = self.faults.extra[n](self.store)
            if late is not None:
                reviews.append(LabeledReview(late, None))
        return PullBatch(tuple(reviews), batch.cursor, batch.retracted, batch.failed, gone)


def stray(building: str, volunteer: str, ext: str, states: tuple[State, ...] | None = None) -> Annotation:
    """An answer the campaign did not ask for."""
    return Annotation(building, volunteer, "simulated", states or (State.INTACT,) * N_DATES,
                      dt.datetime(2024, 7, 1, tzinfo=dt.UTC), ext)  # fmt: skip
