"""The active-learning campaign: rounds over the store that send volunteers only what is worth asking.

One round (:meth:`Campaign.run_round`) is a fixed sequence of steps, each committed to the store with the
round's stage before the next starts, so a round killed at any point (``kill -9``) resumes on rerun from its
last committed step without losing or duplicating an annotation or a task:

1. ``pulled``: pull what the labeler answered since the stored cursor; classify every answer (below); store
   the annotations, retractions, quarantined items, request bookkeeping and the new cursor in one transaction;
2. ``decided``: aggregate every stored review (``GapDawidSkene``) with the champion model as a witness (its
   per-building gap posterior as a ``GapWitness``), decide retirement for every building, store posteriors and
   decisions (each with every review's interval and verdict) and mark the open requests of settled or contested
   buildings for withdrawal;
3. ``withdrawn``: withdraw those buildings from the labeler's queue;
4. ``trained``: when enough newly reviewed buildings arrived, train a candidate warm-started from the champion
   on the *crowd* posteriors (aggregated without the model: the model never learns from its own output) of
   human-reviewed buildings, minus the promotion audit set; register it and promote it only if it beats the
   champion on that audit set (human-settled buildings held out of training, chosen by a seeded hash of their
   id, recorded in the store);
5. ``redecided``: if the champion changed, steps 2 and 3 again with the new champion's predictions;
6. ``selected``: score the eligible buildings with the campaign's acquisition function and choose a batch
   (spatially spread, with a random audit share); the choice with every score is stored as review requests;
7. ``pushed``: push the requests to the labeler (idempotent on the request key) and record their tasks;
8. ``finished``: the round's summary (counts, statuses, model, audit accuracy) and its MLflow child run.

Answers are classified once each (the round summary's ``pull`` counts): ``answered`` (it answers an open
request), ``after_settled`` (the building had settled: kept as evidence, the building is decided again),
``surplus`` (the platform delivered more reviews than asked: kept), ``for_gone_task`` (its task was deleted on
the platform: kept), ``redelivered`` (an external id already stored: unchanged, an update, a stale update or
one arriving after its retraction, as the store decides), ``unsolicited`` (a building never sent to this
labeler) and ``repeat_reviewer`` (a second review of one building by the same volunteer: not independent), both
quarantined with their payload; ``invalid`` (refused by the store's validation) and ``conversion_failed`` (the
labeler could not convert it) are quarantined too. Tasks that vanished on the platform without being withdrawn
are counted (``tasks_gone``) and their buildings become eligible again.

Modes: ``verify``: a building settles only when ``min_reviews`` independent human reviews agree with its date;
``estimate``: the model may also settle a building nobody reviewed when its posterior is confident enough, and a
seeded random share of those model-settled buildings is sent to volunteers anyway (``estimate_audit``); the
share of audited buildings whose human consensus matches the model's date is the audit accuracy, reported with
a 90% interval.

When the labeler is down the loop waits and retries with exponential backoff (up to ``max_wait_s`` per call),
then stops with the round saved at its stage; the next run catches up from the stored cursor. A second loop
process on the same campaign refuses with the holder's pid, host and the fix (``active_learning.lock``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from rich.console import Console
from scipy import stats

from active_learning.acquisition import (
    AcquisitionInputs,
    get_acquisition,
    review_channel,
    score,
    select_batch,
)
from active_learning.aggregation import GapDawidSkene, GapWitness
from active_learning.campaign_log import CampaignLog
from active_learning.champion import CampaignModel, ModelOutput, TrainingSet
from active_learning.errors import CampaignError, LabelerUnavailableError
from active_learning.labelers import Labeler, PullBatch, ReviewRequest
from active_learning.lock import CampaignLock
from active_learning.posterior import Posterior, Status
from active_learning.quality import volunteer_report
from active_learning.retirement import (
    FLAG_MODEL_SETTLED,
    Decision,
    RetirementPolicy,
    decide_all,
    evidence_from_fit,
)
from active_learning.schema import COL_VOLUNTEER, Annotation
from active_learning.store import QuarantineItem, RequestRecord, Store, StoredDecision

if TYPE_CHECKING:
    from model.registry import Tracking

__all__ = [
    "MODES",
    "STAGES",
    "Campaign",
    "CampaignConfig",
    "CampaignStatus",
    "RoundReport",
    "audit_accuracy",
    "campaign_status",
]

MODES = ("verify", "estimate")
STAGES = (
    "started",
    "pulled",
    "decided",
    "withdrawn",
    "trained",
    "redecided",
    "selected",
    "pushed",
    "finished",
)
_OPEN = ("to_push", "open")
_DONE = (Status.SETTLED, Status.EXPERT, Status.CONTESTED)
T = TypeVar("T")


@dataclass(frozen=True)
class CampaignConfig:
    """How a campaign runs (stored with the campaign; the CLI's options).

    Attributes:
        name: the campaign (one store may hold several).
        mode: ``verify`` or ``estimate`` (module docstring).
        acquisition: a name of ``active_learning.acquisition.ACQUISITIONS``.
        batch_size: review requests per round.
        seed_size: buildings of the first, random batch (before any model), each asked ``min_reviews`` times.
        random_share: share of every batch drawn at random (an unbiased sample).
        block_share: at most this share of a batch from one spatial block.
        seed: seed of every random choice of the campaign.
        min_reviews / confidence / max_reviews / max_interval_gaps: retirement
            (``active_learning.retirement.RetirementPolicy``).
        model_confidence: estimate mode: the model's posterior mass that settles a building no human reviewed.
        estimate_audit_share: estimate mode: share of model-settled buildings sent to volunteers anyway.
        promotion_audit_share: share of buildings held out of training to judge promotions (by id hash).
        min_promotion_audit: human-settled audit buildings needed before a candidate can replace the champion.
        first_model_labels: human-reviewed buildings needed to train the first model.
        retrain_min_labels / retrain_growth: retrain when the human-reviewed buildings grew by at least this
            many and this share since the last training.
        model_weight: weight of the model witness in aggregation (1 = its posterior is calibrated).
        max_wait_s: how long one labeler call may keep failing (platform down) before the round stops.
    """

    name: str = "default"
    mode: str = "verify"
    acquisition: str = "eig"
    batch_size: int = 100
    seed_size: int = 100
    random_share: float = 0.1
    block_share: float = 0.1
    seed: int = 0
    min_reviews: int = 2
    confidence: float = 0.95
    max_reviews: int = 5
    max_interval_gaps: int = 2
    model_confidence: float = 0.95
    estimate_audit_share: float = 0.05
    promotion_audit_share: float = 0.15
    min_promotion_audit: int = 10
    first_model_labels: int = 30
    retrain_min_labels: int = 50
    retrain_growth: float = 0.25
    model_weight: float = 1.0
    max_wait_s: float = 600.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise CampaignError(
                f"mode {self.mode!r} is not one of {MODES}; use --mode verify or --mode estimate"
            )
        get_acquisition(self.acquisition)
        if self.batch_size < 1 or self.seed_size < 1:
            raise CampaignError(
                f"batch_size ({self.batch_size}) and seed_size ({self.seed_size}) must be >= 1"
            )
        for name in ("random_share", "estimate_audit_share", "promotion_audit_share"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise CampaignError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        self.policy(estimate=False)  # validates the retirement parameters

    def policy(self, *, estimate: bool | None = None) -> RetirementPolicy:
        """The retirement policy (estimate mode lets the model settle unless ``estimate`` is False)."""
        return RetirementPolicy(
            min_reviews=self.min_reviews,
            confidence=self.confidence,
            max_reviews=self.max_reviews,
            max_interval_gaps=self.max_interval_gaps,
            model_settles=(self.mode == "estimate") if estimate is None else estimate,
            model_confidence=self.model_confidence,
        )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> CampaignConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass(frozen=True)
class RoundReport:
    """What one round did (also in the store's round summary).

    Attributes:
        round_id: the round.
        resumed_from: the stage an interrupted round was resumed from, or None.
        pull: how the answers pulled were classified (module docstring).
        statuses: buildings per status after the round.
        selected: requests pushed this round.
        annotations: human annotations stored after the round.
        model_version: the champion after the round.
        done: nothing is left to ask (every building settled, contested or out of reviews).
        seconds: wall time of the round.
    """

    round_id: int
    resumed_from: str | None
    pull: dict[str, int]
    statuses: dict[str, int]
    selected: int
    annotations: int
    model_version: str | None
    done: bool
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CampaignStatus:
    """Where a campaign stands (``striketracker campaign status`` and the service).

    Attributes:
        name / mode / labeler: the campaign.
        rounds: finished rounds; ``open_round``: an interrupted round and its stage, or None.
        statuses: buildings per status (latest decisions); ``model_settled``: settled by the model alone.
        annotations: human annotations stored (not retracted).
        requests: review requests per status.
        champion: the champion model used by the last round.
        audit: estimate mode's audit accuracy with its 90% interval and sample size (empty otherwise).
        quarantined: items in quarantine.
        lock: who holds the campaign's lock, or None.
    """

    name: str
    mode: str
    labeler: str
    rounds: int
    open_round: tuple[int, str] | None
    statuses: dict[str, int]
    model_settled: int
    annotations: int
    requests: dict[str, int]
    champion: str | None
    audit: dict[str, float]
    quarantined: int
    lock: str | None


def _draw(seed: int, purpose: str, building_id: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, purpose, building): membership of the seeded audit samples."""
    return zlib.crc32(f"{seed}:{purpose}:{building_id}".encode()) / 2**32


class Campaign:
    """An active-learning campaign over a store and a labeler.

    Args:
        store: the store of record.
        labeler: who answers review requests.
        config: how it runs (must match the stored campaign's mode and labeler).
        model: the dating model (None: crowd only, e.g. the ``random`` benchmark arm).
        tracking: MLflow store for the campaign's parent and round runs (None: not logged).
        console: where progress goes (None: quiet).
        sleep: the sleep of the labeler retries (tests pass a recorder).
        stale_after_s / heartbeat_s: the campaign lock's staleness and heartbeat.
        labeler_spec: how the campaign names its labeler in the store (``simulated``, ``labelstudio`` or the
            ``package.module:factory`` it was loaded from); default the labeler's name.
    """

    def __init__(
        self,
        store: Store,
        labeler: Labeler,
        config: CampaignConfig,
        *,
        model: CampaignModel | None = None,
        tracking: Tracking | None = None,
        console: Console | None = None,
        sleep: Callable[[float], None] = time.sleep,
        stale_after_s: float = 600.0,
        heartbeat_s: float = 30.0,
        labeler_spec: str | None = None,
    ) -> None:
        self.store = store
        self.labeler = labeler
        self.config = config
        self.model = model
        self.log = CampaignLog(tracking) if tracking is not None else None
        self.console = console
        self.sleep = sleep
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self.record = store.create_campaign(
            config.name, config.mode, labeler_spec or labeler.name, config.as_dict()
        )
        self.cursor_key = f"campaign:{config.name}:{labeler.name}"
        self._lock: CampaignLock | None = None
        self._attributes: dict[str, dict[str, Any]] | None = None

    # -- setup -------------------------------------------------------------------------------------------------

    @staticmethod
    def register_buildings(
        store: Store,
        building_ids: Sequence[str],
        dates: Sequence[dt.date],
        blocks: Mapping[str, str] | None = None,
    ) -> int:
        """Register the campaign's buildings with their dates and spatial blocks; returns how many were new."""
        iso = [d.isoformat() for d in dates]
        attributes = {b: {"dates": iso, "block": (blocks or {}).get(b, "")} for b in building_ids}
        return store.add_buildings(building_ids, len(iso), attributes, per_building=True)

    def _say(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message)

    @property
    def attributes(self) -> dict[str, dict[str, Any]]:
        if self._attributes is None:
            self._attributes = self.store.building_attributes()
        return self._attributes

    # -- running -----------------------------------------------------------------------------------------------

    def run(
        self,
        max_rounds: int,
        *,
        budget: int | None = None,
        on_round: Callable[[RoundReport], None] | None = None,
    ) -> list[RoundReport]:
        """Run rounds until ``max_rounds``, nothing is left to ask, or ``budget`` annotations are spent."""
        reports = []
        for _ in range(max_rounds):
            report = self.run_round()
            reports.append(report)
            if on_round is not None:
                on_round(report)
            if report.done or (budget is not None and report.annotations >= budget):
                break
        return reports

    def run_round(self) -> RoundReport:
        """Run one round, or finish the interrupted one (module docstring).

        Raises:
            CampaignLockedError: another live process runs this campaign.
            CampaignError: the labeler stayed down longer than ``max_wait_s`` (the round is saved).
        """
        started = time.perf_counter()
        with CampaignLock(
            self.store, self.config.name, stale_after_s=self.stale_after_s, heartbeat_s=self.heartbeat_s
        ) as lock:
            self._lock = lock
            if lock.took_over is not None:
                self._say(
                    f"[yellow]took over the lock of pid {lock.took_over.pid} on {lock.took_over.host} "
                    "(gone or silent)[/yellow]"
                )
            current = self.store.open_round(self.config.name)
            resumed = None
            if current is None:
                n = len(self.store.rounds(self.config.name)) + 1
                round_id = self.store.start_round(
                    "campaign",
                    {"config": self.config.as_dict(), "labeler": self.labeler.name, "number": n},
                    campaign=self.config.name,
                )
                self.store.update_round(round_id, stage="started")
                stage = "started"
            else:
                round_id, stage = current.id, current.stage or "started"
                resumed = stage
                self._say(
                    f"[yellow]resuming round {round_id} after its last completed step '{stage}'[/yellow]"
                )
            steps: list[tuple[str, Callable[[int], None]]] = [
                ("pulled", self._pull),
                ("decided", self._decide_step),
                ("withdrawn", self._withdraw),
                ("trained", self._train),
                ("redecided", self._redecide),
                ("selected", self._select),
                ("pushed", self._push),
                ("finished", self._finish),
            ]
            done_index = STAGES.index(stage)
            for name, step in steps:
                if STAGES.index(name) <= done_index:
                    continue
                lock.check()
                step(round_id)
            self._lock = None
        record = self.store.round(round_id)
        summary = record.summary
        return RoundReport(
            round_id=round_id,
            resumed_from=resumed,
            pull={k: int(v) for k, v in summary.get("pull", {}).items()},
            statuses=dict(summary.get("statuses", {})),
            selected=int(summary.get("selected_count", 0)),
            annotations=int(summary.get("annotations", 0)),
            model_version=record.model_version,
            done=bool(summary.get("done", False)),
            seconds=time.perf_counter() - started,
            summary=summary,
        )

    # -- labeler calls with retries ----------------------------------------------------------------------------

    def _retry(self, what: str, round_id: int, fn: Callable[[], T]) -> T:
        """Call the labeler; while it is unavailable wait with exponential backoff, up to ``max_wait_s``."""
        waited, delay, attempts = 0.0, 2.0, 0
        while True:
            try:
                result = fn()
            except LabelerUnavailableError as exc:
                attempts += 1
                if waited + delay > self.config.max_wait_s:
                    stage = self.store.round(round_id).stage
                    raise CampaignError(
                        f"labeler {self.labeler.name!r} unavailable during {what} for {waited:.0f} s "
                        f"({attempts} attempts; last error: {exc}). Round {round_id} is saved after step "
                        f"'{stage}'; bring the platform back and rerun `striketracker campaign round` to resume"
                    ) from None
                self._say(f"[yellow]{what}: labeler unavailable ({exc}); retrying in {delay:.0f} s[/yellow]")
                self.sleep(delay)
                waited += delay
                delay = min(delay * 2.0, 60.0)
                continue
            if attempts:
                self.store.update_round(
                    round_id, summary={f"retries_{what}": attempts, f"waited_s_{what}": waited}
                )
            return result

    # -- 1. pull -----------------------------------------------------------------------------------------------

    def _pull(self, round_id: int) -> None:
        cursor = self.store.cursor(self.cursor_key)
        batch: PullBatch = self._retry("pull", round_id, lambda: self.labeler.pull(cursor))
        counts: Counter[str] = Counter()
        annotations: list[Annotation] = []
        first: dict[str, Annotation] = {}
        for review in batch.reviews:
            twin = first.get(review.annotation.external_id)
            if twin is not None and twin == review.annotation:  # the same answer twice in one pull
                counts["received"] += 1
                counts["redelivered"] += 1
                continue
            first.setdefault(review.annotation.external_id, review.annotation)
            annotations.append(review.annotation)
        clean, rejects = self.store.validate(annotations)
        valid = {a.external_id: a for a in clean}
        task_of = {review.annotation.external_id: review.task_ref for review in batch.reviews}
        known = self.store.known_external_ids(valid)
        reviewers = self.store.reviewers()
        requests = self.store.requests(self.config.name)
        by_building: dict[str, list[RequestRecord]] = defaultdict(list)
        for request in requests:
            by_building[request.building_id].append(request)
        open_requests = {b: [r for r in rs if r.status in _OPEN] for b, rs in by_building.items()}
        gone_refs = set(batch.gone) | {r.task_ref for r in requests if r.status == "gone" and r.task_ref}
        latest = self.store.latest_decisions()
        updates: dict[int, tuple[str, str | None, str]] = {}
        quarantine: list[QuarantineItem] = []
        accepted: list[Annotation] = []
        seen: dict[str, set[str]] = defaultdict(set)
        counts["invalid"] = len(rejects)
        counts["received"] += len(rejects)
        answers = {r.answer_external_id for r in requests if r.answer_external_id}
        for a in clean:
            counts["received"] += 1
            b, v = a.building_id, a.volunteer_id
            if a.external_id in known:
                # stored already: delivered twice, edited, or written first by a webhook (then it still answers
                # an open request of its building, once)
                pending = open_requests.get(b, [])
                if a.external_id not in answers and pending:
                    updates[pending.pop(0).id] = (
                        "answered",
                        a.external_id,
                        "answered (stored by a webhook first)",
                    )
                    counts["answered"] += 1
                else:
                    counts["redelivered"] += 1
                accepted.append(a)
                continue
            if b not in by_building:
                counts["unsolicited"] += 1
                quarantine.append(
                    _quarantine(
                        a,
                        "building_id",
                        b,
                        f"building {b!r} was never sent to labeler "
                        f"{self.labeler.name!r} by campaign {self.config.name!r}; not counted as evidence "
                        "(release it by hand if it is a genuine review)",
                    )  # fmt: skip
                )
                continue
            if v in reviewers.get(b, set()) or v in seen[b]:
                counts["repeat_reviewer"] += 1
                quarantine.append(
                    _quarantine(
                        a,
                        "volunteer_id",
                        v,
                        f"volunteer {v} already reviewed building {b}; a second "
                        "review by the same person is not independent evidence",
                    )  # fmt: skip
                )
                continue
            seen[b].add(v)
            ref = task_of.get(a.external_id)
            pending = open_requests.get(b, [])
            match = next((r for r in pending if ref is not None and r.task_ref == ref), None) or (
                pending[0] if pending else None
            )
            if match is not None:
                pending.remove(match)
                updates[match.id] = ("answered", a.external_id, "answered")
                counts["answered"] += 1
            elif ref is not None and ref in gone_refs:
                counts["for_gone_task"] += 1
            elif b in latest and latest[b].decision.status in _DONE:
                counts["after_settled"] += 1
            else:
                counts["surplus"] += 1
            accepted.append(a)
        for f in batch.failed:
            counts["received"] += 1
            counts["conversion_failed"] += 1
            quarantine.append(
                QuarantineItem(
                    f.external_id, f.building_id, "conversion", f.task_ref or "", f.reason, dict(f.payload)
                )
            )
        for ref, building in batch.gone.items():
            hit = [
                request
                for request in by_building.get(building, [])
                if request.task_ref == ref and request.status in _OPEN and request.id not in updates
            ]
            if hit:
                counts["tasks_gone"] += 1
                for request in hit:
                    updates[request.id] = ("gone", None, "task deleted on the platform")
        report = self.store.ingest(
            accepted,
            round_id=round_id,
            allow_updates=True,
            retract=batch.retracted,
            retract_reason=f"deleted on {self.labeler.name}",
            quarantine=[*quarantine, *(_reject_item(r, annotations) for r in rejects)],
            cursor=(self.cursor_key, batch.cursor),
            request_updates=updates,
            round_stage=(round_id, "pulled"),
            round_summary={"pull": dict(counts)},
            validated=True,
        )
        self._say(
            f"round {round_id}: pulled {counts['received']} answers ({len(report.inserted)} new, "
            f"{counts['answered']} answering requests, {len(report.quarantined)} quarantined, "
            f"{len(report.retracted)} retracted, {counts['tasks_gone']} tasks gone)"
        )

    # -- 2. decide ---------------------------------------------------------------------------------------------

    def _champion_output(self) -> ModelOutput | None:
        if self.model is None:
            return None
        version = self.model.champion()
        return None if version is None else self.model.predict(version)

    def _decide(self, round_id: int, stage: str) -> None:
        from model.timeline import gap_interval  # imagery readers load only when a round decides

        cfg = self.config
        table = self.store.annotations_table()
        dates = self.store.building_dates()
        ids = list(dates)
        n_dates = max(dates.values())
        output = self._champion_output()
        witness = None
        if output is not None:
            rows = {b: i for i, b in enumerate(output.building_ids)}
            keep = [b for b in ids if b in rows]
            probs = output.probs[[rows[b] for b in keep]]
            witness = GapWitness(tuple(keep), np.log(np.clip(probs, 1e-12, None)), version=output.version)
        aggregator = GapDawidSkene(model_weight=cfg.model_weight)
        fit = aggregator.fit(table, n_dates, building_ids=ids, gap_witness=witness)
        reliability = None
        if not table.empty:
            quality = volunteer_report(fit, table)
            reliability = dict(zip(quality[COL_VOLUNTEER], quality["accuracy"], strict=True))
        policy = cfg.policy()
        evidence = evidence_from_fit(fit, table, reliability=reliability, gap_witness=witness, policy=policy)
        decisions = decide_all(evidence, policy)
        audited = self.store.audit_buildings(cfg.name, "estimate")
        if cfg.mode == "estimate":
            fresh = {
                d.building_id: {"model_gap": d.map_gap, "confidence": d.confidence, "round": round_id}
                for d in decisions
                if FLAG_MODEL_SETTLED in d.flags
                and d.building_id not in audited
                and _draw(cfg.seed, "estimate", d.building_id) < cfg.estimate_audit_share
            }
            if fresh:
                self.store.add_audit_buildings(cfg.name, "estimate", fresh, round_id, fresh)
                audited = {**audited, **fresh}
            human_policy = cfg.policy(estimate=False)
            decisions = [
                decide_all([e], human_policy)[0] if e.building_id in audited else d
                for e, d in zip(evidence, decisions, strict=True)
            ]
        attributes = self.attributes
        posteriors = []
        probs = fit.gap_probs_
        for i, d in enumerate(decisions):
            iso = attributes.get(d.building_id, {}).get("dates") or []
            interval = (
                gap_interval([dt.date.fromisoformat(x) for x in iso], d.map_gap) if iso else (None, None)
            )
            posteriors.append(
                Posterior(
                    building_id=d.building_id,
                    probs=tuple(float(p) for p in probs[i] / probs[i].sum()),
                    map_gap=d.map_gap,
                    interval=interval,
                    confidence=d.confidence,
                    n_reviews=d.n_reviews,
                    status=d.status,
                    model_version=output.version if output is not None else None,
                )
            )
        statuses = Counter(str(d.status) for d in decisions)
        before = self.store.latest_decisions()
        withdraw = [d.building_id for d in decisions if d.status in _DONE]
        # a platform task may serve several reviews (Label Studio's overlap): a building that has just settled
        # leaves the queue even when its requests are all answered
        newly_done = [b for b in withdraw if b not in before or before[b].decision.status not in _DONE]
        channel = review_channel(fit, table) if not table.empty else None
        summary = {
            f"{stage}_model": output.version if output is not None else None,
            "statuses": dict(statuses),
            "model_settled": sum(1 for d in decisions if FLAG_MODEL_SETTLED in d.flags),
            "channel": channel.round(6).tolist() if channel is not None else None,
            "annotations": int(len(table.drop_duplicates("external_id"))) if not table.empty else 0,
            f"{stage}_withdraw": newly_done,
        }
        # a decision is stored when it says something new (status, date, reviews, flags, or its confidence moved);
        # the newest stored decision of every building stays its current one
        changed = [
            i for i, d in enumerate(decisions)
            if d.building_id not in before or _moved(before[d.building_id].decision, d)
        ]  # fmt: skip
        summary["decisions_stored"] = len(changed)
        self.store.save_outcome(
            [posteriors[i] for i in changed],
            [decisions[i] for i in changed],
            aggregator=f"GapDawidSkene(model_weight={cfg.model_weight})",
            round_id=round_id,
            model_version=output.version if output is not None else None,
            withdraw=withdraw,
            campaign=cfg.name,
            stage=stage if stage in STAGES else None,  # decided_again: the stage moves on once withdrawn too
            summary=summary,
        )
        self._say(
            f"round {round_id}: decided {len(decisions)} buildings: "
            + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
        )

    def _decide_step(self, round_id: int) -> None:
        self._decide(round_id, "decided")

    # -- 3. withdraw -------------------------------------------------------------------------------------------

    def _withdraw(self, round_id: int, stage: str = "withdrawn") -> None:
        todo = self.store.requests(self.config.name, status="to_withdraw")
        decided = "decided_again" if stage == "redecided" else "decided"
        settled = self.store.round(round_id).summary.get(f"{decided}_withdraw") or []
        asked = {r.building_id for r in self.store.requests(self.config.name)}
        buildings = sorted({r.building_id for r in todo} | {b for b in settled if b in asked})
        if buildings:
            self._retry("withdraw", round_id, lambda: self.labeler.withdraw(buildings))
        self.store.mark_requests(
            [r.id for r in todo], "withdrawn", reason="building settled", round_id=round_id, stage=stage
        )
        if buildings:
            self._say(
                f"round {round_id}: withdrew {len(buildings)} settled buildings from the labeler's queue"
            )

    # -- 4. train and promote ----------------------------------------------------------------------------------

    def _train(self, round_id: int) -> None:
        cfg = self.config
        if self.model is None:
            self.store.update_round(round_id, stage="trained", summary={"model_event": "no model"})
            return
        champion = self.model.champion()
        latest = self.store.latest_decisions()
        reviewed = sorted(b for b, d in latest.items() if d.decision.n_reviews > 0)
        held_out = {b for b in reviewed if _draw(cfg.seed, "promotion", b) < cfg.promotion_audit_share}
        train_ids = [b for b in reviewed if b not in held_out]
        last = [e for e in self.store.model_events(cfg.name) if e.kind == "trained"]
        last_n = int(last[-1].detail.get("labels", 0)) if last else 0
        grown = len(train_ids) - last_n
        due = (
            len(train_ids) >= cfg.first_model_labels
            if champion is None
            else grown >= max(cfg.retrain_min_labels, cfg.retrain_growth * last_n)
        )
        if not due:
            reason = (
                f"{grown} newly reviewed buildings since the last training (needs {cfg.retrain_min_labels})"
            )
            self.store.update_round(round_id, stage="trained", summary={"model_event": f"skipped: {reason}"})
            return
        table = self.store.annotations_table()
        n_dates = max(self.store.building_dates().values())
        crowd = GapDawidSkene().fit(
            table, n_dates, building_ids=reviewed
        )  # no model witness: crowd labels only
        rows = crowd.index_of(train_ids)
        probs = crowd.gap_probs_[rows]
        grade = np.where(probs[:, -1] < 0.5, crowd.grade_probs_[rows].argmax(axis=1), -1)
        blocks = tuple(str(self.attributes.get(b, {}).get("block") or b) for b in train_ids)
        self._say(f"round {round_id}: training a candidate on {len(train_ids)} crowd-labelled buildings"
                  + (f", warm-started from {champion}" if champion else ""))  # fmt: skip
        candidate = self.model.train(
            TrainingSet(tuple(train_ids), probs, grade, blocks),
            warm_start=champion,
            run_name=f"{cfg.name}-round{round_id}",
        )
        self.store.record_model_event(
            cfg.name, "trained", round_id=round_id, model_version=candidate,
            detail={"labels": len(train_ids), "held_out": len(held_out), "warm_start": champion},
        )  # fmt: skip
        if champion is None:
            outcome = self.model.first_champion(candidate)
        else:
            audit = [
                b for b in sorted(held_out)
                if latest[b].decision.status in (Status.SETTLED, Status.EXPERT)
                and FLAG_MODEL_SETTLED not in latest[b].decision.flags
            ]  # fmt: skip
            if len(audit) < cfg.min_promotion_audit:
                reason = (
                    f"audit set has {len(audit)} human-settled buildings (needs {cfg.min_promotion_audit}); "
                    f"{champion} kept"
                )
                self.store.record_model_event(
                    cfg.name, "kept", round_id=round_id, model_version=champion,
                    detail={"candidate": candidate, "reason": reason},
                )  # fmt: skip
                self.store.update_round(round_id, stage="trained", summary={"model_event": reason})
                self._say(f"round {round_id}: {reason}")
                return
            gaps = crowd.gap_probs_[crowd.index_of(audit)].argmax(axis=1)
            self.store.add_audit_buildings(
                cfg.name,
                "promotion",
                audit,
                round_id,
                {b: {"crowd_gap": int(g)} for b, g in zip(audit, gaps, strict=True)},
            )
            outcome = self.model.promote(candidate, audit, gaps)
        kind = "promoted" if outcome.promoted else "kept"
        detail = {"candidate": candidate, "reason": outcome.reason, "candidate_exact": outcome.candidate_exact,
                  "champion_exact": outcome.champion_exact}  # fmt: skip
        self.store.record_model_event(
            cfg.name, kind, round_id=round_id, model_version=outcome.champion, detail=detail
        )
        self.store.update_round(
            round_id, stage="trained", summary={"model_event": outcome.reason, "labels_used": len(train_ids)}
        )
        self._say(f"round {round_id}: {outcome.reason}")

    # -- 5. decide again with a new champion -------------------------------------------------------------------

    def _redecide(self, round_id: int) -> None:
        summary = self.store.round(round_id).summary
        champion = self.model.champion() if self.model is not None else None
        if champion is not None and champion != summary.get("decided_model"):
            if summary.get("decided_again_model") != champion:  # else killed between deciding and withdrawing
                self._decide(round_id, "decided_again")
            self._withdraw(round_id, stage="redecided")
        else:
            self.store.update_round(round_id, stage="redecided")

    # -- 6. select ---------------------------------------------------------------------------------------------

    def _select(self, round_id: int) -> None:
        cfg = self.config
        record = self.store.round(round_id)
        latest = self.store.latest_decisions()
        requests = self.store.requests(cfg.name)
        asked: Counter[str] = Counter(r.building_id for r in requests)
        pending = {r.building_id for r in requests if r.status in _OPEN}
        audited = self.store.audit_buildings(cfg.name, "estimate")
        ids = sorted(self.store.building_dates())
        rng = np.random.default_rng([cfg.seed, round_id, 0x5E1])

        def eligible(b: str) -> bool:
            d = latest.get(b)
            if b in pending or asked[b] >= cfg.max_reviews + 2:
                return False
            return d is None or (d.decision.status not in _DONE and d.decision.n_reviews < cfg.max_reviews)

        candidates = [b for b in ids if eligible(b)]
        chosen: list[tuple[str, float, str]] = []
        for b in sorted(audited):
            if b in candidates:
                chosen.append((b, 1.0, "estimate_audit"))
        candidates = [b for b in candidates if b not in audited]
        if not requests:
            # the seed batch asks min_reviews independent reviews of each building: with one review per
            # building the crowd model is not identified (its prior and its volunteers' error rates trade off)
            pick = rng.choice(len(candidates), size=min(cfg.seed_size, len(candidates)), replace=False)
            chosen += [
                (candidates[int(i)], 0.0, "seed") for i in sorted(pick) for _ in range(cfg.min_reviews)
            ]
            acquisition = "random"
        elif candidates:
            posts = self.store.latest_posteriors()
            n_gaps = max(self.store.building_dates().values()) + 1
            probs = np.array(
                [posts[b].probs if b in posts else np.full(n_gaps, 1.0 / n_gaps) for b in candidates]
            )
            output = self._champion_output()
            bald = None
            if output is not None:
                rows = {b: i for i, b in enumerate(output.building_ids)}
                bald = np.array([output.bald[rows[b]] if b in rows else 0.0 for b in candidates], dtype=float)
            channel = record.summary.get("channel")
            inputs = AcquisitionInputs(
                tuple(candidates),
                probs,
                bald=bald,
                channel=None if channel is None else np.asarray(channel, dtype=float),
                n_reviews=np.array([latest[b].decision.n_reviews if b in latest else 0 for b in candidates]),
            )
            scores = score(cfg.acquisition, inputs, rng)
            blocks = [str(self.attributes.get(b, {}).get("block") or b) for b in candidates]
            batch = select_batch(
                candidates, scores, cfg.batch_size, rng, blocks=blocks, block_share=cfg.block_share,
                random_share=cfg.random_share,
            )  # fmt: skip
            chosen += [(s.building_id, s.score, s.kind) for s in batch]
            acquisition = cfg.acquisition
        else:
            acquisition = cfg.acquisition
        rows_: list[dict[str, Any]] = []
        for rank, (b, s, kind) in enumerate(chosen):
            asked[b] += 1
            rows_.append(
                {"request_key": f"{b}#{asked[b]}", "building_id": b, "kind": kind,
                 "acquisition": acquisition if kind in ("acquired", "audit") else kind, "score": float(s), "rank": rank}
            )  # fmt: skip
        self.store.add_requests(cfg.name, round_id, rows_, stage="selected")
        scores_ = [float(r["score"]) for r in rows_]
        self.store.update_round(
            round_id,
            summary={
                "selected": [[r["building_id"], round(r["score"], 6), r["kind"]] for r in rows_],
                "selected_count": len(rows_),
                "score_histogram": np.histogram(scores_, bins=10)[0].tolist() if scores_ else [],
                "eligible": len(candidates) + sum(1 for b in audited if b in candidates),
                "done": not rows_ and not pending,
            },
        )
        kinds = Counter(r["kind"] for r in rows_)
        self._say(
            f"round {round_id}: selected {len(rows_)} buildings ("
            + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
            + ")"
        )

    # -- 7. push -----------------------------------------------------------------------------------------------

    def _push(self, round_id: int) -> None:
        todo = self.store.requests(self.config.name, status="to_push")
        n = max(1, len(todo))
        requests = [
            ReviewRequest(
                r.request_key,
                r.building_id,
                tuple(self.attributes.get(r.building_id, {}).get("dates") or ()),
                priority=1.0 - i / n,
                kind=r.kind,
            )
            for i, r in enumerate(sorted(todo, key=lambda r: (r.round_id or 0, r.rank)))
        ]
        refs: dict[str, str] = {}
        if requests:
            receipt = self._retry("push", round_id, lambda: self.labeler.push(requests))
            refs = dict(receipt.task_refs)
            missing = [r.request_key for r in requests if r.request_key not in refs]
            if missing:
                raise CampaignError(
                    f"labeler {self.labeler.name!r} returned no task for {len(missing)} requests ({missing[:3]}); "
                    "the round is saved; rerun to push them again"
                )
        by_key = {r.request_key: r.id for r in todo}
        self.store.mark_requests(
            [r.id for r in todo], "open", task_refs={by_key[k]: v for k, v in refs.items()}, round_id=round_id,
            stage="pushed",
        )  # fmt: skip
        if requests:
            self._say(f"round {round_id}: pushed {len(requests)} review requests to {self.labeler.name}")

    # -- 8. finish ---------------------------------------------------------------------------------------------

    def _finish(self, round_id: int) -> None:
        cfg = self.config
        status = campaign_status(self.store, cfg.name)
        record = self.store.round(round_id)
        champion = self.model.champion() if self.model is not None else None
        summary = {
            "statuses": status.statuses,
            "model_settled": status.model_settled,
            "annotations": status.annotations,
            "requests": status.requests,
            "audit": status.audit,
        }
        if self.log is not None:
            parent = self.log.parent(cfg.name, self.store.campaign(cfg.name).mlflow_run_id, cfg.as_dict())
            self.store.set_campaign_run(cfg.name, parent)
            metrics = {
                "annotations": float(status.annotations),
                "settled": float(status.statuses.get("settled", 0)),
                "contested": float(status.statuses.get("contested", 0)),
                "in_review": float(status.statuses.get("in_review", 0)),
                "unlabelled": float(status.statuses.get("unlabelled", 0)),
                "model_settled": float(status.model_settled),
                "selected": float(record.summary.get("selected_count", 0)),
                "labels_used": float(record.summary.get("labels_used", np.nan)),
                "audit_accuracy": float(status.audit.get("accuracy", np.nan)),
            }
            scores = [float(s[1]) for s in record.summary.get("selected", [])]
            self.log.round(parent, cfg.name, round_id, metrics, {"model_version": champion or "", "mode": cfg.mode,
                                                                 "acquisition": cfg.acquisition}, scores)  # fmt: skip
        note = f"{record.summary.get('selected_count', 0)} requested; " + ", ".join(
            f"{k} {v}" for k, v in sorted(status.statuses.items())
        )
        self.store.update_round(
            round_id, stage="finished", summary=summary, model_version=champion, note=note, finished=True
        )


def _moved(old: Decision, new: Decision, tolerance: float = 0.01) -> bool:
    """Whether a decision says something its predecessor did not."""
    return (
        old.status != new.status
        or old.map_gap != new.map_gap
        or old.n_reviews != new.n_reviews
        or old.n_consistent != new.n_consistent
        or old.flags != new.flags
        or abs(old.confidence - new.confidence) > tolerance
    )


def _quarantine(a: Annotation, field_: str, value: str, reason: str) -> QuarantineItem:
    payload = {
        "building_id": a.building_id,
        "volunteer_id": a.volunteer_id,
        "source": a.source,
        "states": [s.label for s in a.states],
        "submitted_at": a.submitted_at.isoformat(),
        "external_id": a.external_id,
        "comment": a.comment,
    }
    return QuarantineItem(a.external_id, a.building_id, field_, value, reason, payload)


def _reject_item(reject: Any, annotations: Sequence[Annotation]) -> QuarantineItem:
    source = next((a for a in annotations if a.external_id == reject.external_id), None)
    payload = (
        _quarantine(source, reject.field, reject.value, reject.reason).payload if source is not None else {}
    )
    return QuarantineItem(
        reject.external_id, reject.building_id, reject.field, reject.value, reject.reason, payload
    )


def audit_accuracy(store: Store, campaign: str) -> dict[str, float]:
    """Estimate mode's audit: of the model-settled buildings sent to volunteers and since settled by them, the
    share whose human date matches the model's, with a 90% Jeffreys interval; empty without audited buildings."""
    audited = store.audit_buildings(campaign, "estimate")
    if not audited:
        return {}
    latest = store.latest_decisions()
    judged = [
        (b, d) for b, d in audited.items()
        if b in latest and latest[b].decision.status in (Status.SETTLED, Status.EXPERT)
        and latest[b].decision.n_consistent > 0
    ]  # fmt: skip
    n = len(judged)
    if n == 0:
        return {"sample": float(len(audited)), "judged": 0.0}
    k = sum(1 for b, d in judged if int(d["model_gap"]) == latest[b].decision.map_gap)
    lo, hi = stats.beta.ppf([0.05, 0.95], k + 0.5, n - k + 0.5)
    return {"accuracy": k / n, "lo90": float(lo if k > 0 else 0.0), "hi90": float(hi if k < n else 1.0),
            "judged": float(n), "sample": float(len(audited))}  # fmt: skip


def campaign_status(store: Store, campaign: str) -> CampaignStatus:
    """Where a campaign stands, read from the store."""
    record = store.campaign(campaign)
    latest: dict[str, StoredDecision] = store.latest_decisions()
    statuses = Counter(str(d.decision.status) for d in latest.values())
    model_settled = sum(1 for d in latest.values() if FLAG_MODEL_SETTLED in d.decision.flags)
    rounds = store.rounds(campaign)
    open_round = next(((r.id, r.stage or "started") for r in rounds if r.finished_at is None), None)
    finished = [r for r in rounds if r.finished_at is not None]
    lock = store.lock(campaign)
    return CampaignStatus(
        name=record.name,
        mode=record.mode,
        labeler=record.labeler,
        rounds=len(finished),
        open_round=open_round,
        statuses=dict(statuses),
        model_settled=model_settled,
        annotations=store.annotation_count(sources=("labelstudio", "simulated")),
        requests=store.request_counts(campaign),
        champion=finished[-1].model_version if finished else None,
        audit=audit_accuracy(store, campaign) if record.mode == "estimate" else {},
        quarantined=len(store.quarantine()),
        lock=None
        if lock is None
        else f"pid {lock.pid} on {lock.host} since {lock.acquired_at:%Y-%m-%d %H:%M:%S}",
    )
