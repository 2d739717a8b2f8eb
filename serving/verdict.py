"""A researcher's verdict on one building: stored as gold, and the building's posterior and status follow it.

A verdict names the destruction gap (or "not damaged", gap T) and the grade, optionally with dates the
researcher could not judge. It becomes:

1. an ``expert`` :class:`active_learning.Annotation` (external id ``expert:<uuid>``, one state per date:
   intact before the gap, the grade from it on, ``not_visible`` where the researcher could not judge), which the
   next aggregation uses as gold: it clamps the building and anchors every volunteer's error model;
2. earlier verdicts on the building are retracted (superseded, kept as evidence), so gold never contradicts
   itself;
3. a new posterior version: the current posterior restricted to the gaps the verdict admits and renormalised
   (uniform over them when the current posterior gives them no mass), status ``expert``;
4. a decision with the reason (who, which gap and dates, how many volunteer reviews agree, the note).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from active_learning.posterior import Posterior, Status
from active_learning.retirement import Decision
from active_learning.schema import Annotation, State
from active_learning.store import AnnotationRecord, Store
from serving.errors import UnknownBuildingError, VerdictConflictError, VerdictError

__all__ = ["Verdict", "VerdictOutcome", "admitted_gaps", "apply_verdict", "restrict", "verdict_states"]

SUPERSEDED_REASON = "superseded by verdict {}"


@dataclass(frozen=True)
class Verdict:
    """What a researcher decided about one building.

    Attributes:
        gap: destruction gap in ``0..T`` (T = not damaged by the last image).
        grade: ``damaged`` or ``destroyed`` (ignored for gap T).
        reviewer: the researcher's handle (stored as the pseudonymous ``expert-<handle>`` witness).
        note: free text kept in the decision's reason.
        not_visible: date indices the researcher could not judge (no evidence there).
    """

    gap: int
    grade: str = "destroyed"
    reviewer: str = "researcher"
    note: str = ""
    not_visible: tuple[int, ...] = ()


@dataclass(frozen=True)
class VerdictOutcome:
    """What applying a verdict stored."""

    building_id: str
    external_id: str
    posterior: Posterior
    posterior_version: int
    decision: Decision
    superseded: tuple[str, ...]


def verdict_states(verdict: Verdict, n_dates: int) -> tuple[State, ...]:
    """The verdict as per-date states.

    Raises:
        VerdictError: the gap or a hidden date lies outside the timeline.
    """
    if not 0 <= verdict.gap <= n_dates:
        raise VerdictError(
            "gap",
            f"gap {verdict.gap} is outside this building's timeline: use 0..{n_dates} "
            f"(0 = damaged in the first image, {n_dates} = not damaged)",
        )
    bad = [t for t in verdict.not_visible if not 0 <= t < n_dates]
    if bad:
        raise VerdictError("not_visible", f"date indices {bad} are outside 0..{n_dates - 1}")
    if n_dates and len(set(verdict.not_visible)) == n_dates:
        raise VerdictError("not_visible", "every date is marked not visible; judge at least one date")
    damaged = State.DESTROYED if verdict.grade == "destroyed" else State.DAMAGED
    hidden = set(verdict.not_visible)
    return tuple(
        State.NOT_VISIBLE if t in hidden else (State.INTACT if t < verdict.gap else damaged)
        for t in range(n_dates)
    )


def admitted_gaps(states: Sequence[State]) -> np.ndarray:
    """Boolean ``[T + 1]``: the gaps a review's visible answers are all consistent with."""
    n = len(states)
    ok = np.ones(n + 1, dtype=bool)
    for t, s in enumerate(states):
        if s == State.NOT_VISIBLE:
            continue
        g = np.arange(n + 1)
        ok &= (g > t) if s == State.INTACT else (g <= t)
    return ok


def restrict(probs: Sequence[float] | None, admitted: np.ndarray) -> np.ndarray:
    """The posterior restricted to the admitted gaps and renormalised (uniform over them without mass)."""
    base = np.ones(len(admitted)) if probs is None else np.asarray(probs, dtype=np.float64)
    if base.shape != admitted.shape:
        base = np.ones(len(admitted))
    kept = np.where(admitted, base, 0.0)
    if kept.sum() <= 0:
        kept = admitted.astype(np.float64)
    return kept / kept.sum()


def _consistent(record: AnnotationRecord, gap: int) -> bool:
    return bool(admitted_gaps(record.annotation.states)[gap])


def apply_verdict(
    store: Store,
    building_id: str,
    verdict: Verdict,
    dates: Sequence[dt.date],
    *,
    now: dt.datetime | None = None,
) -> VerdictOutcome:
    """Store a verdict as gold and move the building's posterior and status with it (module docstring).

    Args:
        store: the store of record.
        building_id: the building judged.
        verdict: the researcher's verdict.
        dates: the building's timeline (empty when unknown: then only gaps are checked).
        now: the submission time (default: the current UTC time).

    Raises:
        UnknownBuildingError: the building is not in the store.
        VerdictError: the verdict lies outside the timeline.
        VerdictConflictError: the store quarantined the expert annotation.
    """
    found = store.building(building_id)
    if found is None:
        raise UnknownBuildingError(f"building {building_id!r} is not in the store")
    n_dates, _ = found
    states = verdict_states(verdict, n_dates)
    external_id = f"expert:{uuid.uuid4()}"
    submitted = now or dt.datetime.now(dt.UTC)
    annotation = Annotation(
        building_id=building_id,
        volunteer_id=f"expert-{verdict.reviewer}",
        source="expert",
        states=states,
        submitted_at=submitted,
        external_id=external_id,
    )
    report = store.add_annotations([annotation])
    if report.quarantined:
        raise VerdictConflictError(
            f"verdict on {building_id!r} quarantined by the store: {report.quarantined[0].reason}"
        )
    records = store.building_annotations(building_id)
    earlier = [
        r.annotation.external_id
        for r in records
        if r.annotation.source == "expert"
        and r.annotation.external_id != external_id
        and r.retracted_at is None
    ]
    superseded = tuple(store.retract(earlier, SUPERSEDED_REASON.format(external_id))) if earlier else ()

    current = store.latest_posterior_record(building_id)
    probs = restrict(current.posterior.probs if current else None, admitted_gaps(states))
    gap = int(probs.argmax())
    human = [r for r in records if r.annotation.source != "expert" and r.retracted_at is None]
    volunteers: dict[str, bool] = {}
    for r in human:
        volunteers[r.annotation.volunteer_id] = volunteers.get(
            r.annotation.volunteer_id, True
        ) and _consistent(r, gap)
    n_reviews, n_consistent = len(volunteers), sum(volunteers.values())
    last_intact = dates[gap - 1] if dates and gap >= 1 else None
    first_damaged = dates[gap] if dates and gap < len(dates) else None
    posterior = Posterior(
        building_id=building_id,
        probs=tuple(float(p) for p in probs),
        map_gap=gap,
        interval=(last_intact, first_damaged),
        confidence=float(probs[gap]),
        n_reviews=n_reviews,
        status=Status.EXPERT,
        model_version=current.posterior.model_version if current else None,
    )
    version = store.save_posteriors([posterior], aggregator=f"expert verdict {external_id}")[building_id]
    when = (
        "not damaged by the last image"
        if gap == n_dates
        else f"gap {gap} (last intact {last_intact or 'before the first image'}, "
        f"first damaged {first_damaged or '-'}, {verdict.grade})"
    )
    reason = (
        f"expert verdict {external_id} by {verdict.reviewer}: {when}; "
        f"{n_consistent} of {n_reviews} volunteer reviews agree"
        + (f"; supersedes {', '.join(superseded)}" if superseded else "")
        + (f"; note: {verdict.note.strip()}" if verdict.note.strip() else "")
    )
    decision = Decision(
        building_id, Status.EXPERT, reason, (), gap, float(probs[gap]), n_reviews, n_consistent
    )
    store.record_decisions([decision])
    return VerdictOutcome(building_id, external_id, posterior, version, decision, superseded)
