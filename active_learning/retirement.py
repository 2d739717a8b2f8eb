"""Retirement: when a building leaves the labelling queue, decided as a pure function with a stored reason.

DESIGN section 3: a building is *settled* when at least ``min_reviews`` independent human reviews are consistent
with the MAP gap and the MAP gap's posterior mass reaches ``confidence``; an expert review overrides everything;
after ``max_reviews`` without settling it is *contested*. Flags for researchers: ``contested``,
``model_conflict`` (the model puts little mass on the crowd's MAP gap), ``low_reliability`` (the reviewers'
estimated accuracy is low). :func:`decide` is pure; :func:`evidence_from_fit` gathers its inputs from a fitted
aggregator, so every decision can be recomputed from stored annotations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from active_learning.aggregation import GapDawidSkene, ModelEmissions
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
    "BuildingEvidence",
    "Decision",
    "RetirementPolicy",
    "decide",
    "decide_all",
    "evidence_from_fit",
    "review_consistency",
]

FLAG_CONTESTED = "contested"
FLAG_MODEL_CONFLICT = "model_conflict"
FLAG_LOW_RELIABILITY = "low_reliability"


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
    """

    min_reviews: int = 2
    confidence: float = 0.95
    max_reviews: int = 5
    model_conflict_mass: float = 0.05
    reliability_floor: float = 0.7

    def __post_init__(self) -> None:
        if self.min_reviews < 1:
            raise RetirementError(f"min_reviews must be >= 1, got {self.min_reviews}")
        if self.max_reviews < self.min_reviews:
            raise RetirementError(
                f"max_reviews ({self.max_reviews}) must be >= min_reviews ({self.min_reviews})"
            )
        if not 0.0 < self.confidence <= 1.0:
            raise RetirementError(f"confidence must be in (0, 1], got {self.confidence}")


@dataclass(frozen=True)
class BuildingEvidence:
    """What retirement looks at for one building.

    Attributes:
        building_id: the building.
        probs: posterior over gaps (crowd, gold and model combined).
        n_reviews: independent human reviews (distinct volunteers).
        n_consistent: of those, reviews whose visible answers all agree with the MAP gap.
        expert: an expert (gold) review exists.
        reviewer_reliability: mean estimated accuracy of the building's reviewers (None without reviews).
        model_probs: the model's posterior over gaps on its own, or None.
    """

    building_id: str
    probs: tuple[float, ...]
    n_reviews: int
    n_consistent: int
    expert: bool = False
    reviewer_reliability: float | None = None
    model_probs: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Decision:
    """A retirement decision, stored with its reason.

    Attributes:
        building_id: the building.
        status: the new workflow status.
        reason: one sentence with the numbers that decided it.
        flags: researcher flags (``contested``, ``model_conflict``, ``low_reliability``).
        map_gap: the MAP gap the decision is about.
        confidence: its posterior mass.
        n_reviews: independent human reviews.
        n_consistent: reviews consistent with the MAP gap.
    """

    building_id: str
    status: Status
    reason: str
    flags: tuple[str, ...]
    map_gap: int
    confidence: float
    n_reviews: int
    n_consistent: int


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
    facts = f"MAP gap {g} with mass {mass:.3f}, {k} of {n} independent reviews consistent"
    if evidence.expert:
        status, reason = Status.EXPERT, f"expert review overrides: {facts}"
    elif k >= policy.min_reviews and mass >= policy.confidence:
        status = Status.SETTLED
        reason = f"settled: {facts} (needs {policy.min_reviews} and mass {policy.confidence})"
    elif n >= policy.max_reviews:
        status = Status.CONTESTED
        reason = f"contested after {n} reviews (max {policy.max_reviews}): {facts}"
        flags.insert(0, FLAG_CONTESTED)
    elif n == 0:
        status, reason = (
            Status.UNLABELLED,
            f"no human review yet; model-only estimate: MAP gap {g} with mass {mass:.3f}",
        )
    else:
        status = Status.IN_REVIEW
        reason = (
            f"in review: {facts}; needs {max(0, policy.min_reviews - k)} more consistent reviews"
            f" and mass {policy.confidence}"
        )
    return Decision(evidence.building_id, status, reason, tuple(flags), g, mass, n, k)


def decide_all(
    evidence: list[BuildingEvidence], policy: RetirementPolicy = RetirementPolicy()
) -> list[Decision]:
    """:func:`decide` for every building."""
    return [decide(e, policy) for e in evidence]


def review_consistency(table: pd.DataFrame, map_gaps: Mapping[str, int]) -> pd.DataFrame:
    """Per human review: whether its visible answers all agree with its building's MAP gap.

    Returns:
        One row per external id: building id, volunteer id, ``consistent`` (bool).
    """
    human = table[(table[COL_SOURCE] != "expert") & (table[COL_STATE] != int(State.NOT_VISIBLE))]
    gap = human[COL_BUILDING].map(map_gaps)
    if gap.isna().any():
        missing = human.loc[gap.isna(), COL_BUILDING].unique()[:5].tolist()
        raise RetirementError(f"no MAP gap for buildings {missing}; aggregate them first")
    damaged = human[COL_STATE] != int(State.INTACT)
    agree = damaged == (human[COL_DATE_INDEX] >= gap)
    per = (
        human.assign(_agree=agree)
        .groupby(COL_EXTERNAL_ID, sort=False)
        .agg(
            building_id=(COL_BUILDING, "first"),
            volunteer_id=(COL_VOLUNTEER, "first"),
            consistent=("_agree", "all"),
        )
    )
    return per.reset_index()


def evidence_from_fit(
    fit: GapDawidSkene,
    table: pd.DataFrame,
    *,
    reliability: Mapping[str, float] | None = None,
    emissions: ModelEmissions | None = None,
) -> list[BuildingEvidence]:
    """Gather retirement evidence for every fitted building.

    Independent reviews are distinct volunteers; a volunteer counts as consistent when all its reviews of the
    building are. ``reliability`` maps volunteer ids to estimated accuracy (see active_learning.quality).
    """
    gaps = dict(zip(fit.building_ids_, fit.map_gap_.tolist(), strict=True))
    per_review = review_consistency(table, gaps)
    per_volunteer = per_review.groupby([COL_BUILDING, COL_VOLUNTEER])["consistent"].all().reset_index()
    n_consistent = per_volunteer.groupby(COL_BUILDING)["consistent"].sum()
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
            )
        )
    return out
