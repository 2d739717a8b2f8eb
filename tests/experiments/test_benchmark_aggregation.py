"""The aggregation benchmark's baselines are computed the way they are documented."""

from __future__ import annotations

import datetime as dt

import numpy as np

from active_learning.schema import Annotation, State, annotations_to_table
from experiments.benchmarks.aggregation import _tie_middle, majority_of_gaps, majority_vote

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
