"""Simulated volunteers: deterministic by seed, realistic skill spread, errors where the task is hard."""

from __future__ import annotations

import numpy as np
import pandas as pd

from active_learning.schema import State
from active_learning.truth import BuildingTruth
from active_learning.volunteers import (
    PoolConfig,
    VolunteerKind,
    VolunteerPool,
    answer,
    simulate_annotations,
    simulate_expert_annotations,
    synthetic_truths,
)


def consistent(states, gap: int) -> bool:
    return all(s == State.NOT_VISIBLE or (s != State.INTACT) == (t >= gap) for t, s in enumerate(states))


def test_pool_and_answers_are_deterministic_by_seed() -> None:
    truths = synthetic_truths(30, 10, seed=1)
    a = simulate_annotations(truths, VolunteerPool.create(20, seed=5), 3, seed=9)
    b = simulate_annotations(truths, VolunteerPool.create(20, seed=5), 3, seed=9)
    assert a == b
    assert a != simulate_annotations(truths, VolunteerPool.create(20, seed=5), 3, seed=10)
    assert len({x.external_id for x in a}) == len(a) == 90
    per_building = pd.Series([x.building_id for x in a]).value_counts()
    assert (per_building == 3).all()


def test_skill_spread_and_bad_share() -> None:
    pool = VolunteerPool.create(100, seed=2)
    counts = pd.Series([v.kind for v in pool.volunteers]).value_counts()
    assert counts[VolunteerKind.GOOD] > counts[VolunteerKind.CARELESS] > counts[VolunteerKind.ADVERSARIAL] > 0
    bad = VolunteerPool.create(100, seed=2, config=PoolConfig().with_bad_share(0.2))
    kinds = [v.kind for v in bad.volunteers]
    assert sum(k in (VolunteerKind.CARELESS, VolunteerKind.ADVERSARIAL) for k in kinds) == 20


def test_errors_concentrate_on_hard_buildings_and_by_kind() -> None:
    rng = np.random.default_rng(0)
    n = 12
    visible = (True,) * n
    easy = BuildingTruth(
        "easy", 6, tuple(State.INTACT if t < 6 else State.DESTROYED for t in range(n)), visible, 0.0
    )
    hard = BuildingTruth("hard", 6, tuple(State.INTACT if t < 6 else State.DAMAGED for t in range(n)), visible, 1.0,
                         partial=True)  # fmt: skip
    profiles = dict(PoolConfig().profiles)

    def accuracy(truth: BuildingTruth, kind: VolunteerKind) -> float:
        return float(
            np.mean([consistent(answer(truth, profiles[kind], rng), truth.true_gap) for _ in range(600)])
        )

    assert accuracy(easy, VolunteerKind.GOOD) > accuracy(hard, VolunteerKind.GOOD) + 0.1
    assert (
        accuracy(easy, VolunteerKind.GOOD)
        > accuracy(easy, VolunteerKind.MEDIOCRE)
        > accuracy(easy, VolunteerKind.CARELESS)
    )
    assert accuracy(easy, VolunteerKind.ADVERSARIAL) < 0.5


def test_clouded_dates_are_mostly_not_visible_and_experts_are_near_perfect() -> None:
    truths = synthetic_truths(200, 10, seed=3, cloud_rate=0.3)
    gold = simulate_expert_annotations(truths, seed=3)
    assert all(a.source == "expert" for a in gold)
    assert np.mean([consistent(a.states, t.true_gap) for a, t in zip(gold, truths, strict=True)]) > 0.97
    hidden = [a.states[i] == State.NOT_VISIBLE for a, t in zip(gold, truths, strict=True) for i in range(10)
              if not t.visible[i]]  # fmt: skip
    assert all(hidden)


def test_reviews_without_slips_are_the_same_reviews_less_their_isolated_slips() -> None:
    truths = synthetic_truths(60, 10, seed=3, cloud_rate=0.0)
    pool = VolunteerPool.create(20, seed=4, config=PoolConfig(shares=((VolunteerKind.MEDIOCRE, 1.0),)))
    with_slips = simulate_annotations(truths, pool, 3, seed=5)
    perceived = simulate_annotations(truths, pool, 3, seed=5, slips=False)
    # the same volunteers on the same buildings, drawing the same random numbers
    assert [(a.building_id, a.volunteer_id, a.external_id) for a in with_slips] == [
        (a.building_id, a.volunteer_id, a.external_id) for a in perceived
    ]

    def monotone(states) -> bool:
        damaged = [s != State.INTACT for s in states if s != State.NOT_VISIBLE]
        return damaged == sorted(damaged)

    assert all(monotone(a.states) for a in perceived)  # honest, cloudless reviews: one boundary
    assert not all(monotone(a.states) for a in with_slips)  # the slips break some of them
    differing = [(a, b) for a, b in zip(with_slips, perceived, strict=True) if a.states != b.states]
    assert differing and len(differing) < len(perceived) / 2
    for a, b in differing:  # each difference is a state flipped between intact and damaged
        assert all((s == State.INTACT) != (t == State.INTACT) for s, t in zip(a.states, b.states) if s != t)
