"""Retirement is a pure decision with a stored reason."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from active_learning.aggregation import GapDawidSkene, GapWitness
from active_learning.errors import RetirementError
from active_learning.posterior import Status
from active_learning.quality import volunteer_report
from active_learning.retirement import (
    FLAG_CONTESTED,
    FLAG_LOW_RELIABILITY,
    FLAG_MODEL_CONFLICT,
    FLAG_MODEL_SETTLED,
    BuildingEvidence,
    RetirementPolicy,
    decide,
    evidence_from_fit,
    interval_agrees,
    review_interval,
)
from active_learning.schema import Annotation, State, annotations_to_table, validate_table
from tests.active_learning.conftest import N_DATES

IN, D, N = State.INTACT, State.DAMAGED, State.NOT_VISIBLE
WHEN = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
SURE = (0.0, 0.0, 0.97, 0.03)
UNSURE = (0.0, 0.4, 0.5, 0.1)


def test_settled_needs_enough_consistent_reviews_and_mass() -> None:
    assert decide(BuildingEvidence("b", SURE, 2, 2)).status is Status.SETTLED
    assert decide(BuildingEvidence("b", SURE, 2, 1)).status is Status.IN_REVIEW
    assert decide(BuildingEvidence("b", UNSURE, 3, 3)).status is Status.IN_REVIEW
    d = decide(BuildingEvidence("b", SURE, 2, 2))
    assert "mass 0.970" in d.reason and "2 of 2" in d.reason and d.map_gap == 2


def test_contested_after_max_reviews_and_expert_overrides() -> None:
    d = decide(BuildingEvidence("b", UNSURE, 5, 2), RetirementPolicy(max_reviews=5))
    assert d.status is Status.CONTESTED and FLAG_CONTESTED in d.flags
    assert decide(BuildingEvidence("b", UNSURE, 5, 0, expert=True)).status is Status.EXPERT
    assert decide(BuildingEvidence("b", UNSURE, 0, 0)).status is Status.UNLABELLED


def test_flags_for_researchers() -> None:
    d = decide(
        BuildingEvidence("b", SURE, 2, 2, reviewer_reliability=0.5, model_probs=(0.9, 0.05, 0.01, 0.04))
    )
    assert set(d.flags) == {FLAG_MODEL_CONFLICT, FLAG_LOW_RELIABILITY}
    calm = decide(BuildingEvidence("b", SURE, 2, 2, reviewer_reliability=0.95, model_probs=SURE))
    assert calm.flags == ()


def test_bad_policy_and_evidence_are_refused() -> None:
    with pytest.raises(RetirementError, match="max_reviews"):
        RetirementPolicy(min_reviews=3, max_reviews=2)
    with pytest.raises(RetirementError, match="distribution"):
        decide(BuildingEvidence("b", (0.5, 0.2), 1, 1))
    with pytest.raises(RetirementError, match="consistent"):
        decide(BuildingEvidence("b", SURE, 1, 2))


def test_decide_is_pure() -> None:
    e = BuildingEvidence("b", SURE, 3, 2, reviewer_reliability=0.9)
    assert decide(e) == decide(e)


def test_evidence_from_a_fit(crowd_table, truths) -> None:
    fit = GapDawidSkene().fit(crowd_table, N_DATES)
    report = volunteer_report(fit, crowd_table)
    evidence = evidence_from_fit(
        fit, crowd_table, reliability=dict(zip(report.volunteer_id, report.accuracy, strict=True))
    )
    assert len(evidence) == len(truths)
    assert all(e.n_consistent <= e.n_reviews == 3 for e in evidence)
    decisions = [decide(e) for e in evidence]
    statuses = {d.status for d in decisions}
    assert Status.EXPERT in statuses and Status.SETTLED in statuses
    settled = [d for d in decisions if d.status is Status.SETTLED]
    truth = {t.building_id: t.true_gap for t in truths}
    # settled buildings are where the crowd is right most often
    assert np.mean([truth[d.building_id] == d.map_gap for d in settled]) > 0.9


T = 4  # dates of the hand-made reviews below; gaps 0..4


@pytest.mark.parametrize(
    ("states", "gap", "agrees"),
    [
        # saw only the first date intact: consistent with every later gap, confirms none of them
        ((IN, N, N, N), 2, False),
        ((IN, N, N, N), T, False),
        # saw only the last date damaged: consistent with every earlier gap, confirms none
        ((N, N, N, D), 2, False),
        ((N, N, N, D), 0, False),
        # brackets the gap with both of its dates
        ((IN, IN, D, D), 2, True),
        ((IN, N, N, D), 2, False),  # three gaps open (1, 2, 3)
        ((IN, IN, N, D), 2, True),  # one hidden date next to the change: two gaps open
        ((IN, IN, N, D), 3, True),
        ((IN, IN, N, D), 1, False),  # intact at date 1 rules gap 1 out
        ((D, D, D, D), 0, True),  # damaged from the first image
        ((IN, IN, IN, IN), T, True),  # intact through the last image
        ((IN, IN, IN, N), T, True),  # the last date hidden: two gaps open, still brackets
        ((IN, D, IN, D), 2, False),  # not monotone: agrees with nothing
    ],
)
def test_a_review_agrees_only_when_its_interval_brackets_the_gap(states, gap, agrees) -> None:
    last_intact, first_damaged = review_interval(states)
    assert interval_agrees(last_intact, first_damaged, gap, T) is agrees


def test_reviews_that_see_one_date_never_verify_a_building() -> None:
    """Before the fix a review that saw only the first date intact 'confirmed' any later MAP gap, so a building
    the model alone dated could be recorded as settled by humans."""
    rows = [
        Annotation("b", "v1", "simulated", (IN, N, N, N), WHEN, "r1"),
        Annotation("b", "v2", "simulated", (IN, N, N, N), WHEN, "r2"),
    ]
    table = validate_table(annotations_to_table(rows), n_dates=T, strict=True).table
    confident_model = np.log(np.array([[0.001, 0.001, 0.996, 0.001, 0.001]]))
    witness = GapWitness(("b",), confident_model)
    fit = GapDawidSkene().fit(table, T, gap_witness=witness)
    (evidence,) = evidence_from_fit(fit, table, gap_witness=witness)
    assert fit.map_gap_[0] == 2 and evidence.n_reviews == 2
    assert evidence.n_consistent == 0
    decision = decide(evidence)
    assert decision.status is Status.IN_REVIEW
    assert [(r.last_intact, r.first_damaged, r.agrees) for r in decision.reviews] == [(0, None, False)] * 2

    bracketing = [*rows, Annotation("b", "v3", "simulated", (IN, IN, D, D), WHEN, "r3"),
                  Annotation("b", "v4", "simulated", (IN, IN, D, N), WHEN, "r4")]  # fmt: skip
    table = validate_table(annotations_to_table(bracketing), n_dates=T, strict=True).table
    fit = GapDawidSkene().fit(table, T, gap_witness=witness)
    (evidence,) = evidence_from_fit(fit, table, gap_witness=witness)
    assert evidence.n_consistent == 2
    assert decide(evidence).status is Status.SETTLED


def test_estimate_mode_lets_a_confident_model_settle_unreviewed_buildings() -> None:
    policy = RetirementPolicy(model_settles=True, model_confidence=0.9)
    d = decide(BuildingEvidence("b", SURE, 0, 0), policy)
    assert d.status is Status.SETTLED and FLAG_MODEL_SETTLED in d.flags and "model alone" in d.reason
    assert decide(BuildingEvidence("b", UNSURE, 0, 0), policy).status is Status.UNLABELLED
    assert decide(BuildingEvidence("b", SURE, 0, 0)).status is Status.UNLABELLED  # verify mode
    with pytest.raises(RetirementError, match="max_interval_gaps"):
        RetirementPolicy(max_interval_gaps=0)
