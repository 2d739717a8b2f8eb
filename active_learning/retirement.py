"""Retirement: when a building leaves the labelling queue, decided as a pure function with a stored reason.

DESIGN section 3: a building is *settled* when at least ``min_reviews`` independent human reviews agree with
the MAP gap and the MAP gap's posterior mass reaches ``confidence``; an expert review overrides everything;
after ``max_reviews`` without settling it is *contested*. Flags for researchers: ``contested``,
``model_conflict`` (the model puts little mass on the crowd's MAP gap), ``low_reliability`` (the reviewers'
estimated accuracy is low), ``model_settled`` (settled by the model alone, estimate mode).

A review *agrees* with a gap only when its own interval brackets it (:func:`interval_agrees`): the last date it
marked intact lies before the gap and the first date it marked damaged at or after it, each side seen where the
gap has one, and the dates it left unseen between the two leave at most ``max_interval_gaps`` gaps open. A
review that saw too little to bracket the gap does not count: one that saw only the first date intact is
consistent with every later gap but confirms none of them. Each decision keeps every review's interval and
verdict (:class:`ReviewInterval`). :func:`decide` is pure; :func:`evidence_from_fit` gathers its inputs from a
fitted aggregator, so every decision can be recomputed from stored annotations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from active_learning.aggregation import GapDawidSkene, GapWitness, ModelEmissions
from active_learning.errors import RetirementError
from active_learning.posterior import Status
from active_learning.schema import (
    COL_BUILDING,
    COL_DATE_INDEX,
    COL_EXTERNAL_ID,
    COL_SOURCE,
    COL_STATE,
    COL_VOLUNTEER,
    State,
)
from model.changepoint import gap_log_likelihood, gap_posterior

__all__ = [
    "FLAG_CONTESTED",
    "FLAG_LOW_RELIABILITY",
    "FLAG_MODEL_CONFLICT",
    "FLAG_MODEL_SETTLED",
    "BuildingEvidence",
    "Decision",
    "RetirementPolicy",
    "ReviewInterval",
    "decide",
    "decide_all",
    "evidence_from_fit",
    "interval_agrees",
    "review_consistency",
    "review_interval",
]

FLAG_CONTESTED = "contested"
FLAG_MODEL_CONFLICT = "model_conflict"
FLAG_LOW_RELIABILITY = "low_reliability"
FLAG_MODEL_SETTLED = "model_settled"


@dataclass(frozen=True)
class RetirementPolicy:
    """When to stop asking about a building.

    Attributes:
        min_reviews: independent human reviews consistent with the MAP gap needed to settle.
        confidence: posterior mass of the MAP gap needed to settle.
        max_reviews: reviews after which an unsettled building is contested.
        model_conflict_mass: flag model-vs-crowd conflict when the model alone gives the crowd's MAP gap less
            than this probability.
        reliability_floor: flag low reliability when the reviewers' mean estimated accuracy is below this.
        max_interval_gaps: a review agrees with a gap only if the dates it left unseen around its change leave
            at most this many gaps open (1: it saw both dates of the gap; 2: one date hidden next to it).
        model_settles: estimate mode: a building no human reviewed is settled by the model alone when the MAP
            gap's mass reaches ``model_confidence`` (flagged ``model_settled``).
        model_confidence: the mass the model alone needs to settle a building (``model_settles``).
    """

    min_reviews: int = 2
    confidence: float = 0.95
    max_reviews: int = 5
    model_conflict_mass: float = 0.05
    reliability_floor: float = 0.7
    max_interval_gaps: int = 2
    model_settles: bool = False
    model_confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.min_reviews < 1:
            raise RetirementError(f"min_reviews must be >= 1, got {self.min_reviews}")
        if self.max_interval_gaps < 1:
            raise RetirementError(
                f"max_interval_gaps must be >= 1 (1 = the review saw both dates of the gap), got "
                f"{self.max_interval_gaps}"
            )
        if not 0.0 < self.model_confidence <= 1.0:
            raise RetirementError(f"model_confidence must be in (0, 1], got {self.model_confidence}")
        if self.max_reviews < self.min_reviews:
            raise RetirementError(
                f"max_reviews ({self.max_reviews}) must be >= min_reviews ({self.min_reviews})"
            )
        if not 0.0 < self.confidence <= 1.0:
            raise RetirementError(f"confidence must be in (0, 1], got {self.confidence}")


@dataclass(frozen=True)
class ReviewInterval:
    """One human review's own interval and whether it agrees with the MAP gap it was judged against.

    Attributes:
        external_id: the review's idempotency key.
        volunteer_id: its pseudonymous volunteer.
        last_intact: the last date index it marked intact (None: never seen intact).
        first_damaged: the first date index it marked damaged or destroyed (None: never seen damaged).
        agrees: its interval brackets the gap (:func:`interval_agrees`).
    """

    external_id: str
    volunteer_id: str
    last_intact: int | None
    first_damaged: int | None
    agrees: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "external_id": self.external_id,
            "volunteer_id": self.volunteer_id,
            "last_intact": self.last_intact,
            "first_damaged": self.first_damaged,
            "agrees": self.agrees,
        }


def review_interval(states: tuple[State, ...] | list[State]) -> tuple[int | None, int | None]:
    """(last date marked intact, first date marked damaged or destroyed) of one review; None where never seen."""
    intact = [t for t, s in enumerate(states) if s == State.INTACT]
    damaged = [t for t, s in enumerate(states) if s in (State.DAMAGED, State.DESTROYED)]
    return (max(intact) if intact else None, min(damaged) if damaged else None)


def interval_agrees(
    last_intact: int | None, first_damaged: int | None, gap: int, n_dates: int, max_gaps: int = 2
) -> bool:
    """Whether a review with this interval confirms ``gap`` (module docstring).

    The review must bracket the gap, ``last_intact < gap <= first_damaged``, with the intact side seen unless
    the gap is 0 (damaged in the first image) and the damaged side seen unless the gap is ``n_dates`` (never
    damaged); and the gaps its interval leaves open, ``first_damaged - last_intact`` (with an unseen side at the
    timeline's end), must be at most ``max_gaps``. A non-monotone review (intact after damage) agrees with
    nothing.
    """
    if not 0 <= gap <= n_dates:
        raise RetirementError(f"gap {gap} outside 0..{n_dates}")
    if last_intact is not None and first_damaged is not None and last_intact >= first_damaged:
        return False
    if gap > 0 and last_intact is None:
        return False
    if gap < n_dates and first_damaged is None:
        return False
    lo = 0 if last_intact is None else last_intact + 1
    hi = n_dates if first_damaged is None else first_damaged
    return lo <= gap <= hi and hi - lo + 1 <= max_gaps


@dataclass(frozen=True)
class BuildingEvidence:
    """What retirement looks at for one building.

    Attributes:
        building_id: the building.
        probs: posterior over gaps (crowd, gold and model combined).
        n_reviews: independent human reviews (distinct volunteers).
        n_consistent: of those, volunteers whose every review of the building agrees with the MAP gap
            (:func:`interval_agrees`).
        expert: an expert (gold) review exists.
        reviewer_reliability: mean estimated accuracy of the building's reviewers (None without reviews).
        model_probs: the model's posterior over gaps on its own, or None.
        reviews: every human review's interval and verdict, stored with the decision.
    """

    building_id: str
    probs: tuple[float, ...]
    n_reviews: int
    n_consistent: int
    expert: bool = False
    reviewer_reliability: float | None = None
    model_probs: tuple[float, ...] | None = None
    reviews: tuple[ReviewInterval, ...] = ()


@dataclass(frozen=True)
class Decision:
    """A retirement decision, stored with its reason.

    Attributes:
        building_id: the building.
        status: the new workflow status.
        reason: one sentence with the numbers that decided it.
        flags: researcher flags (``contested``, ``model_conflict``, ``low_reliability``, ``model_settled``).
        map_gap: the MAP gap the decision is about.
        confidence: its posterior mass.
        n_reviews: independent human reviews.
        n_consistent: independent reviews that agree with the MAP gap.
        reviews: every human review's interval and verdict (what ``n_consistent`` counted).
    """

    building_id: str
    status: Status
    reason: str
    flags: tuple[str, ...]
    map_gap: int
    confidence: float
    n_reviews: int
    n_consistent: int
    reviews: tuple[ReviewInterval, ...] = ()


def decide(evidence: BuildingEvidence, policy: RetirementPolicy = RetirementPolicy()) -> Decision:
    """Decide one building's status from its evidence; pure and deterministic."""
    probs = np.asarray(evidence.probs, dtype=float)
    if probs.ndim != 1 or len(probs) < 2 or not np.isclose(probs.sum(), 1.0, atol=1e-4):
        raise RetirementError(
            f"{evidence.building_id}: probs must be a distribution over >= 2 gaps, got sum {probs.sum():.4f}"
        )
    if evidence.n_consistent > evidence.n_reviews:
        raise RetirementError(
            f"{evidence.building_id}: {evidence.n_consistent} consistent reviews but only {evidence.n_reviews} reviews"
        )
    g = int(probs.argmax())
    mass = float(probs[g])
    flags: list[str] = []
    if evidence.model_probs is not None and evidence.n_reviews > 0:
        model_mass = float(evidence.model_probs[g])
        if model_mass < policy.model_conflict_mass:
            flags.append(FLAG_MODEL_CONFLICT)
    if (
        evidence.reviewer_reliability is not None
        and evidence.n_reviews > 0
        and evidence.reviewer_reliability < policy.reliability_floor
    ):
        flags.append(FLAG_LOW_RELIABILITY)

    n, k = evidence.n_reviews, evidence.n_consistent
    facts = f"MAP gap {g} with mass {mass:.3f}, {k} of {n} independent reviews agree"
    if evidence.expert:
        status, reason = Status.EXPERT, f"expert review overrides: {facts}"
    elif k >= policy.min_reviews and mass >= policy.confidence:
        status = Status.SETTLED
        reason = f"settled: {facts} (needs {policy.min_reviews} and mass {policy.confidence})"
    elif n >= policy.max_reviews:
        status = Status.CONTESTED
        reason = f"contested after {n} reviews (max {policy.max_reviews}): {facts}"
        flags.insert(0, FLAG_CONTESTED)
    elif n == 0 and policy.model_settles and mass >= policy.model_confidence:
        status = Status.SETTLED
        reason = (
            f"settled by the model alone (estimate mode): MAP gap {g} with mass {mass:.3f} "
            f"(needs {policy.model_confidence}); no human review"
        )
        flags.append(FLAG_MODEL_SETTLED)
    elif n == 0:
        status, reason = (
            Status.UNLABELLED,
            f"no human review yet; model-only estimate: MAP gap {g} with mass {mass:.3f}",
        )
    else:
        status = Status.IN_REVIEW
        reason = (
            f"in review: {facts}; needs {max(0, policy.min_reviews - k)} more agreeing reviews"
            f" and mass {policy.confidence}"
        )
    return Decision(evidence.building_id, status, reason, tuple(flags), g, mass, n, k, evidence.reviews)


def decide_all(
    evidence: list[BuildingEvidence], policy: RetirementPolicy = RetirementPolicy()
) -> list[Decision]:
    """:func:`decide` for every building."""
    return [decide(e, policy) for e in evidence]


def review_consistency(
    table: pd.DataFrame, map_gaps: Mapping[str, int], n_dates: int, max_gaps: int = 2
) -> pd.DataFrame:
    """Per human review: its interval and whether it agrees with its building's MAP gap (:func:`interval_agrees`).

    Returns:
        One row per external id: ``building_id``, ``volunteer_id``, ``last_intact``, ``first_damaged`` (float,
        NaN where never seen) and ``consistent`` (bool: the review agrees).
    """
    human = table[table[COL_SOURCE] != "expert"]
    gap = human[COL_BUILDING].map(map_gaps)
    if gap.isna().any():
        missing = human.loc[gap.isna(), COL_BUILDING].unique()[:5].tolist()
        raise RetirementError(f"no MAP gap for buildings {missing}; aggregate them first")
    state = human[COL_STATE]
    date = human[COL_DATE_INDEX]
    intact = date.where(state == int(State.INTACT))
    damaged = date.where(state.isin([int(State.DAMAGED), int(State.DESTROYED)]))
    per = (
        human.assign(_intact=intact, _damaged=damaged)
        .groupby(COL_EXTERNAL_ID, sort=False)
        .agg(
            building_id=(COL_BUILDING, "first"),
            volunteer_id=(COL_VOLUNTEER, "first"),
            last_intact=("_intact", "max"),
            first_damaged=("_damaged", "min"),
        )
    )
    gaps = per["building_id"].map(map_gaps).astype(int)
    per["consistent"] = [
        interval_agrees(
            None if np.isnan(li) else int(li), None if np.isnan(fd) else int(fd), int(g), n_dates, max_gaps
        )
        for li, fd, g in zip(per["last_intact"], per["first_damaged"], gaps, strict=True)
    ]
    return per.reset_index()


def evidence_from_fit(
    fit: GapDawidSkene,
    table: pd.DataFrame,
    *,
    reliability: Mapping[str, float] | None = None,
    emissions: ModelEmissions | None = None,
    gap_witness: GapWitness | None = None,
    policy: RetirementPolicy = RetirementPolicy(),
) -> list[BuildingEvidence]:
    """Gather retirement evidence for every fitted building.

    Independent reviews are distinct volunteers; a volunteer counts as agreeing when all its reviews of the
    building agree with the MAP gap (:func:`interval_agrees` with ``policy.max_interval_gaps``).
    ``reliability`` maps volunteer ids to estimated accuracy (see active_learning.quality); the model on its own
    (for the ``model_conflict`` flag) comes from ``emissions`` or, failing that, ``gap_witness``.
    """
    gaps = dict(zip(fit.building_ids_, fit.map_gap_.tolist(), strict=True))
    per_review = review_consistency(table, gaps, fit.n_dates_, policy.max_interval_gaps)
    per_volunteer = per_review.groupby([COL_BUILDING, COL_VOLUNTEER])["consistent"].all().reset_index()
    n_consistent = per_volunteer.groupby(COL_BUILDING)["consistent"].sum()
    intervals: dict[str, list[ReviewInterval]] = {}
    for row in per_review.itertuples(index=False):
        intervals.setdefault(str(row.building_id), []).append(
            ReviewInterval(
                external_id=str(row.external_id),
                volunteer_id=str(row.volunteer_id),
                last_intact=None if np.isnan(row.last_intact) else int(row.last_intact),
                first_damaged=None if np.isnan(row.first_damaged) else int(row.first_damaged),
                agrees=bool(row.consistent),
            )
        )
    mean_rel: pd.Series | None = None
    if reliability is not None:
        rel = per_volunteer[COL_VOLUNTEER].map(reliability)
        mean_rel = rel.groupby(per_volunteer[COL_BUILDING]).mean()
    model_probs: dict[str, tuple[float, ...]] = {}
    if emissions is not None:
        w = emissions.weight if emissions.weight is not None else np.ones_like(emissions.log_intact)
        ll = gap_log_likelihood(
            torch.from_numpy(np.asarray(emissions.log_intact, dtype=float)),
            torch.from_numpy(np.asarray(emissions.log_damaged, dtype=float)),
            torch.from_numpy(np.asarray(w, dtype=float)),
        )
        post = gap_posterior(ll).exp().numpy()
        model_probs = {b: tuple(p.tolist()) for b, p in zip(emissions.building_ids, post, strict=True)}
    elif gap_witness is not None:
        post = (
            gap_posterior(torch.from_numpy(np.asarray(gap_witness.log_likelihood, dtype=float))).exp().numpy()
        )
        model_probs = {b: tuple(p.tolist()) for b, p in zip(gap_witness.building_ids, post, strict=True)}
    probs = fit.gap_probs_
    out = []
    for i, b in enumerate(fit.building_ids_):
        r = None
        if mean_rel is not None and b in mean_rel.index and not pd.isna(mean_rel[b]):
            r = float(mean_rel[b])
        out.append(
            BuildingEvidence(
                building_id=str(b),
                probs=tuple((probs[i] / probs[i].sum()).tolist()),
                n_reviews=int(fit.n_reviews_[i]),
                n_consistent=int(n_consistent.get(b, 0)),
                expert=bool(fit.gold_[i]),
                reviewer_reliability=r,
                model_probs=model_probs.get(str(b)),
                reviews=tuple(intervals.get(str(b), ())),
            )
        )
    return out
