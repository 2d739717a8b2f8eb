"""The aggregation benchmark's baselines, upper bound and witness tempering work as documented."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

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
from experiments.benchmarks.aggregation import (
    _tie_middle,
    flag_scores,
    majority_of_gaps,
    majority_vote,
    oracle_log_likelihood,
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
