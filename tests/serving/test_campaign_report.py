"""The campaign plot's points are the campaign's state after each round, not the decisions the round changed."""

from __future__ import annotations

import datetime as dt

from active_learning.posterior import Status
from active_learning.retirement import Decision
from active_learning.schema import Annotation, State
from active_learning.store import Store
from serving.report import campaign_points

WHEN = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


def test_each_point_counts_every_decided_building_and_the_reviews_received_by_then(tmp_path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    store.add_buildings(["b1", "b2", "b3"], n_dates=2)
    first = store.start_round("campaign", {})
    store.add_annotations([Annotation("b1", "v1", "simulated", (State.INTACT, State.DAMAGED), WHEN, "ls:1")])
    store.record_decisions(
        [
            Decision(b, Status.SETTLED if b == "b1" else Status.IN_REVIEW, "", (), 1, 0.9, 1, 1)
            for b in ("b1", "b2")
        ],
        first,
    )
    store.finish_round(first)
    second = store.start_round("campaign", {})
    store.add_annotations([Annotation("b2", "v2", "simulated", (State.INTACT, State.DAMAGED), WHEN, "ls:2")])
    store.record_decisions([Decision("b2", Status.SETTLED, "", (), 1, 0.99, 2, 2)], second)  # only b2 changed
    store.finish_round(second)
    points = campaign_points(store)
    assert [(p.round_id, p.reviews, p.statuses) for p in points] == [
        (first, 1, {"settled": 1, "in_review": 1}),
        (second, 2, {"settled": 2}),
    ]
