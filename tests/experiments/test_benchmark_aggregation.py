"""The aggregation benchmark's baselines, upper bound and witness tempering work as documented."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from active_learning.aggregation import GapDawidSkene, GapWitness
from active_learning.schema import Annotation, State, annotations_to_table
from active_learning.volunteers import (
    PoolConfig,
    VolunteerKind,
    VolunteerPool,
    simulate_annotations,
    simulate_expert_annotations,
    synthetic_truths,
)
from experiments.benchmarks import aggregation
from experiments.benchmarks.aggregation import (
    _tie_middle,
    flag_scores,
    interval_answers,
    interval_summary,
    interval_verdict,
    majority_of_gaps,
    majority_vote,
    oracle_log_likelihood,
    paired_bootstrap_ci,
    witness_weight_from_gold,
)

IN, D, N = State.INTACT, State.DAMAGED, State.NOT_VISIBLE
WHEN = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


def test_ties_go_to_the_middle() -> None:
    assert _tie_middle(np.array([[1.0, 3.0, 3.0, 3.0, 0.0], [5.0, 5.0, 0.0, 0.0, 0.0]])).tolist() == [2, 0]


def test_majority_vote_fits_a_monotone_gap() -> None:
    rows = [
        Annotation("b", "v1", "simulated", (IN, IN, D, D), WHEN, "1"),
        Annotation("b", "v2", "simulated", (IN, IN, D, D), WHEN, "2"),
        Annotation("b", "v3", "simulated", (IN, D, D, D), WHEN, "3"),
        Annotation("c", "v1", "simulated", (IN, IN, IN, IN), WHEN, "4"),
    ]
    table = annotations_to_table(rows)
    assert majority_vote(table, ["b", "c", "none"], 4).tolist()[:2] == [2, 4]
    assert majority_of_gaps(table, ["b", "c", "none"], 4).tolist() == [2, 4, 4]


def test_oracle_upper_bound_is_at_least_as_good_as_the_aggregators() -> None:
    truths = list(synthetic_truths(200, 8, seed=3))
    pool = VolunteerPool.create(25, seed=3)
    crowd = simulate_annotations(truths, pool, 3, seed=3)
    table = annotations_to_table(crowd)
    ids = [t.building_id for t in truths]
    truth = np.array([t.true_gap for t in truths])
    prior = np.log(np.bincount(truth, minlength=9) + 0.5)
    oracle = (oracle_log_likelihood(truths, crowd, pool) + prior).argmax(axis=1)
    ours = GapDawidSkene().fit(table, 8, building_ids=ids).predict().reindex(ids).to_numpy()
    mv = majority_vote(table, ids, 8)
    assert (oracle == truth).mean() >= (ours == truth).mean() >= (mv == truth).mean()


def test_witness_weight_is_tempered_on_gold_only() -> None:
    truths = list(synthetic_truths(60, 8, seed=4))
    gold = simulate_expert_annotations(truths, seed=4)
    truth = np.array([t.true_gap for t in truths])
    ids = tuple(t.building_id for t in truths)
    sharp_right = np.where(np.arange(9)[None, :] == truth[:, None], 0.0, -30.0)
    assert witness_weight_from_gold(GapWitness(ids, sharp_right), gold) == 1.0
    wrong = np.roll(sharp_right, 1, axis=0)  # confidently wrong on most buildings
    mixed = np.where(np.arange(60)[:, None] % 3 == 0, wrong, sharp_right)
    assert witness_weight_from_gold(GapWitness(ids, mixed), gold) < 0.5


def test_flag_scores_count_flags_against_the_true_kinds() -> None:
    pool = VolunteerPool.create(40, seed=5, config=PoolConfig().with_bad_share(0.3))
    kinds = pool.kinds()
    bad = [v for v, k in kinds.items() if k in (VolunteerKind.CARELESS, VolunteerKind.ADVERSARIAL)]
    good = [v for v in kinds if v not in bad]
    # two bad volunteers flagged, one missed, one honest flagged, one honest not
    report = pd.DataFrame(
        {"volunteer_id": [*bad[:3], *good[:2]], "flag": ["careless", "adversarial", "", "careless", ""]}
    )
    scores = flag_scores(report, pool)
    assert scores == {"precision": 2 / 3, "recall": 2 / 3, "honest_flagged": 1 / 2}
    assert flag_scores(report.assign(flag=""), pool)["precision"] == 1.0


def test_interval_answers_keep_what_the_compact_config_can_say() -> None:
    X = State.DESTROYED
    rows = [
        Annotation("b", "v1", "simulated", (IN, N, IN, D, X), WHEN, "1"),  # damaged then destroyed
        Annotation("b", "v2", "simulated", (IN, D, IN, IN, D), WHEN, "2"),  # a slip before the change
        Annotation("b", "v3", "simulated", (N, N, N, N, N), WHEN, "3"),  # cannot tell
    ]
    out = interval_answers(rows)
    assert [a.states for a in out] == [(IN, N, IN, X, X), (IN, IN, IN, IN, D), (N, N, N, N, N)]
    assert [(a.external_id, a.volunteer_id) for a in out] == [(a.external_id, a.volunteer_id) for a in rows]


def test_paired_bootstrap_interval_covers_the_difference_and_only_sees_disagreements() -> None:
    rng = np.random.default_rng(7)
    a = rng.random(400) < 0.8
    b = a.copy()
    flip = rng.choice(400, size=40, replace=False)
    b[flip[:30]] = False  # b misses 30 that a gets, gets 10 that a misses
    b[flip[30:]] = True
    a[flip[30:]] = False
    diff = a.mean() - b.mean()
    lo, hi = paired_bootstrap_ci(a, b, seed=0)
    assert lo < diff < hi and lo > 0  # 20 net of 40 disagreements: clearly better
    assert paired_bootstrap_ci(a, a, seed=0) == (0.0, 0.0)  # same answers: no doubt at all
    wide_lo, wide_hi = paired_bootstrap_ci(a, b, seed=0, level=0.99)
    assert wide_lo < lo and wide_hi > hi
    with pytest.raises(ValueError, match="equal non-empty"):
        paired_bootstrap_ci(a, b[:-1], seed=0)


def test_interval_verdict_names_which_criterion_holds() -> None:
    assert interval_verdict(0.0, -0.01, 0.01) == "at_least_per_date"
    assert interval_verdict(-0.002, -0.01, 0.005) == "within_noise"
    assert interval_verdict(-0.004, -0.01, 0.005) == "loses"  # holds 0, but more than 0.3 points below
    assert interval_verdict(-0.002, -0.004, -0.001) == "loses"  # small, but the interval excludes 0


def test_a_tiny_run_reports_the_interval_arm_with_its_paired_interval(monkeypatch) -> None:
    truths = list(synthetic_truths(150, 8, seed=2))
    monkeypatch.setattr(aggregation, "_truths", lambda preset, seed, console: (truths, "synthetic"))
    figures = aggregation.run("tiny", 2, n_100k=200, console=Console(quiet=True))
    for prefix, k in (("", 3), ("", 5), ("adversarial_", 3)):
        diff = figures[f"{prefix}interval_minus_per_date_{k}"]
        lo, hi = (figures[f"{prefix}interval_minus_per_date_ci90_{end}_{k}"] for end in ("lo", "hi"))
        assert diff == figures[f"{prefix}interval_ours_accuracy_{k}"] - figures[f"{prefix}ours_accuracy_{k}"]
        assert lo <= diff <= hi
        assert figures[f"{prefix}interval_verdict_{k}"] == interval_verdict(diff, lo, hi)
    line = interval_summary(figures)
    assert line.count("90% [") == 3 and "adversarial" in line
