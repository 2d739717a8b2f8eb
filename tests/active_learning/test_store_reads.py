"""The store's read methods for the service: one building's evidence, latest records, rounds, change stamp."""

from __future__ import annotations

import datetime as dt

import pytest

from active_learning.posterior import Posterior, Status
from active_learning.retirement import Decision
from active_learning.schema import Annotation, State
from active_learning.store import Store

IN, D = State.INTACT, State.DAMAGED
WHEN = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


def _posterior(b: str, gap: int, status: Status = Status.IN_REVIEW) -> Posterior:
    probs = tuple(0.9 if g == gap else 0.025 for g in range(5))
    return Posterior(b, probs, gap, (None, None), 0.9, 2, status, "m/1")


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    s.add_buildings(["b1", "b2"], n_dates=4, attributes={"dates": ["2017-01-01"] * 4})
    return s


def test_building_and_its_annotations_with_retractions(store: Store) -> None:
    assert store.building("b1") == (4, {"dates": ["2017-01-01"] * 4}) and store.building("zz") is None
    store.add_annotations(
        [Annotation("b1", "v1", "simulated", (IN, IN, D, D), WHEN, "x:1"),
         Annotation("b1", "v2", "simulated", (IN, D, D, D), WHEN, "x:2"),
         Annotation("b2", "v1", "simulated", (IN, IN, IN, D), WHEN, "x:3")]
    )  # fmt: skip
    store.retract(["x:2"], "deleted at the source")
    records = store.building_annotations("b1")
    assert [r.annotation.external_id for r in records] == ["x:1", "x:2"]
    assert records[0].retracted_at is None and records[0].revision == 1
    assert records[1].retracted_at is not None and records[1].retracted_reason == "deleted at the source"
    assert [(b, e, v, s) for b, e, v, s, _ in store.annotation_log()] == [
        ("b1", "x:1", "v1", "simulated"), ("b2", "x:3", "v1", "simulated"),
    ]  # fmt: skip


def test_latest_posterior_and_decision_records(store: Store) -> None:
    rid = store.start_round("aggregation")
    store.save_posteriors([_posterior("b1", 1), _posterior("b2", 2)], aggregator="ds", round_id=rid)
    store.save_posteriors([_posterior("b1", 3, Status.SETTLED)], aggregator="ds2")
    store.record_decisions([Decision("b1", Status.IN_REVIEW, "first", (), 1, 0.9, 2, 1)], rid)
    store.record_decisions([Decision("b1", Status.CONTESTED, "second", ("contested",), 3, 0.9, 5, 1)])
    latest = store.latest_posterior_records()
    assert (
        latest["b1"].version == 2 and latest["b1"].posterior.map_gap == 3 and latest["b1"].aggregator == "ds2"
    )
    assert latest["b2"].round_id == rid and store.latest_posterior_record("b1") == latest["b1"]
    assert store.latest_posterior_record("b9") is None
    decisions = store.latest_decisions()
    assert list(decisions) == ["b1"] and decisions["b1"].decision.reason == "second"
    assert decisions["b1"].decision.flags == ("contested",) and decisions["b1"].round_id is None
    assert [r.decision.reason for r in store.decision_records("b1")] == ["first", "second"]
    assert store.round_status_counts() == {rid: {"in_review": 1}}


def test_round_status_counts_carry_each_buildings_latest_status_forward(store: Store) -> None:
    first = store.start_round("acquisition", {})
    store.record_decisions(
        [
            Decision("b1", Status.SETTLED, "", (), 1, 0.99, 3, 3),
            Decision("b2", Status.IN_REVIEW, "", (), 2, 0.6, 1, 1),
        ],
        first,
    )
    second = store.start_round("acquisition", {})  # records only what changed: b2 settles
    store.record_decisions([Decision("b2", Status.SETTLED, "", (), 2, 0.98, 3, 3)], second)
    third = store.start_round("acquisition", {})  # b1 reopens
    store.record_decisions([Decision("b1", Status.CONTESTED, "", ("contested",), 1, 0.5, 5, 2)], third)
    assert store.round_status_counts() == {
        first: {"settled": 1, "in_review": 1},
        second: {"settled": 2},
        third: {"settled": 1, "contested": 1},
    }


def test_rounds_and_the_change_stamp_move_with_every_write(store: Store) -> None:
    stamps = [store.change_stamp()]
    rid = store.start_round("acquisition", {"k": 1})
    stamps.append(store.change_stamp())
    store.finish_round(rid, "done")
    stamps.append(store.change_stamp())
    store.add_annotations([Annotation("b1", "v1", "simulated", (IN, IN, D, D), WHEN, "x:1")])
    stamps.append(store.change_stamp())
    store.add_annotations(
        [Annotation("b1", "v1", "simulated", (IN, D, D, D), WHEN, "x:1")], allow_updates=True
    )
    stamps.append(store.change_stamp())
    store.retract(["x:1"], "gone")
    stamps.append(store.change_stamp())
    store.save_posteriors([_posterior("b1", 1)])
    stamps.append(store.change_stamp())
    store.record_decisions([Decision("b1", Status.IN_REVIEW, "r", (), 1, 0.9, 2, 1)])
    stamps.append(store.change_stamp())
    assert len(set(stamps)) == len(stamps)
    assert store.change_stamp() == stamps[-1]  # reading changes nothing
    (r,) = store.rounds()
    assert (r.id, r.kind, r.params, r.note) == (
        rid,
        "acquisition",
        {"k": 1},
        "done",
    ) and r.finished_at is not None


def test_building_record_reads_everything_about_one_building(store: Store) -> None:
    assert store.building_record("zz") is None
    empty = store.building_record("b2")
    assert empty is not None and (empty.posterior, empty.annotations, empty.decisions) == (None, (), ())
    store.add_annotations([Annotation("b1", "v1", "simulated", (IN, IN, D, D), WHEN, "x:1")])
    store.save_posteriors([_posterior("b1", 1)])
    store.save_posteriors([_posterior("b1", 2, Status.SETTLED)], aggregator="again")
    store.record_decisions([Decision("b1", Status.SETTLED, "why", ("model_conflict",), 2, 0.9, 2, 2)])
    record = store.building_record("b1")
    assert record is not None and record.n_dates == 4 and record.attributes == {"dates": ["2017-01-01"] * 4}
    assert record.posterior == store.latest_posterior_record("b1") and record.posterior.version == 2
    assert record.annotations == tuple(store.building_annotations("b1"))
    assert record.decisions == tuple(store.decision_records("b1"))
    assert record.annotations[0].annotation.submitted_at == WHEN


def test_building_dates_of_some_buildings_and_validation_either_side_of_the_keyed_lookup(
    store: Store,
) -> None:
    store.add_buildings([f"c{i:04d}" for i in range(600)], n_dates=3)
    assert store.building_dates(["b1", "c0007", "nope"]) == {"b1": 4, "c0007": 3}
    assert len(store.building_dates()) == 602
    many = [f"c{i:04d}" for i in range(600)] + ["nope"]  # more buildings than the keyed lookup takes
    for ids in (["b1", "nope"], many):
        annotations = [
            Annotation(b, "v1", "simulated", (State.INTACT,) * (4 if b == "b1" else 3), WHEN, f"ls:{b}")
            for b in ids
        ]
        clean, rejects = store.validate(annotations)
        assert [r.external_id for r in rejects] == ["ls:nope"]
        assert "unknown building" in rejects[0].reason
        assert len(clean) == len(ids) - 1
