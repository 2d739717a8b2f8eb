"""Retirement is a pure decision with a stored reason."""

from __future__ import annotations

import numpy as np
import pytest

from active_learning.aggregation import GapDawidSkene
from active_learning.errors import RetirementError
from active_learning.posterior import Status
from active_learning.quality import volunteer_report
from active_learning.retirement import (
    FLAG_CONTESTED,
    FLAG_LOW_RELIABILITY,
    FLAG_MODEL_CONFLICT,
    BuildingEvidence,
    RetirementPolicy,
    decide,
    evidence_from_fit,
)
from tests.active_learning.conftest import N_DATES

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
