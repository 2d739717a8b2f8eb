"""The store of record: migrations from code, idempotent annotations, quarantine, versions, decisions."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from active_learning.errors import MigrationError, StoreError
from active_learning.lock import CampaignLock, CampaignLockedError, LockLostError
from active_learning.posterior import Posterior, Status
from active_learning.retirement import BuildingEvidence, decide
from active_learning.schema import Annotation, State
from active_learning.store import Base, QuarantineItem, Store, upgrade_to_head
from tests.postgres import LivePostgres

IN, D, N = State.INTACT, State.DAMAGED, State.NOT_VISIBLE
WHEN = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


@pytest.fixture
def store(store_url: str) -> Store:
    """A store on each backend (tests.postgres.store_url: a SQLite file, a fresh PostgreSQL database)."""
    s = Store.open(store_url)
    s.add_buildings(["b1", "b2"], n_dates=4)
    return s


def test_migrations_build_exactly_the_models(store_url: str) -> None:
    url = store_url
    upgrade_to_head(url)
    upgrade_to_head(url)  # idempotent
    engine = create_engine(url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert MigrationContext.configure(conn).get_current_revision() == "0003"


def test_annotations_are_idempotent_and_bad_ones_quarantined(store: Store) -> None:
    good = Annotation("b1", "v1", "simulated", (IN, IN, D, D), WHEN, "ls:1")
    first = store.add_annotations([good])
    assert first.inserted == ("ls:1",)
    again = store.add_annotations([good])
    assert again.inserted == () and again.unchanged == ("ls:1",)

    changed = Annotation("b1", "v1", "simulated", (IN, D, D, D), WHEN, "ls:1")
    unknown = Annotation("b9", "v1", "simulated", (IN, IN, D, D), WHEN, "ls:2")
    short = Annotation("b2", "v1", "simulated", (IN, D), WHEN, "ls:3")
    bad_gold = Annotation("b2", "e1", "expert", (IN, D, IN, D), WHEN, "gold:1")
    fine = Annotation("b2", "v2", "simulated", (IN, N, D, D), WHEN, "ls:4")
    report = store.add_annotations([changed, unknown, short, bad_gold, fine])
    assert report.inserted == ("ls:4",)
    reasons = {r.external_id: r.reason for r in report.quarantined}
    assert set(reasons) == {"ls:1", "ls:2", "ls:3", "gold:1"}
    assert "different content" in reasons["ls:1"]
    assert "unknown building" in reasons["ls:2"]
    assert "4 dates" in reasons["ls:3"]
    assert "contradicts itself" in reasons["gold:1"]

    stored = {a.external_id: a for a in store.annotations()}
    assert stored["ls:1"] == good  # the first version is kept
    assert stored["ls:4"].states == (IN, N, D, D)
    kept = {q.external_id: q for q in store.quarantine()}
    assert kept["ls:1"].payload["states"] == ["intact", "damaged", "damaged", "damaged"]  # nothing lost
    assert kept["ls:2"].payload["building_id"] == "b9"
    table = store.annotations_table()
    assert set(table["external_id"]) == {"ls:1", "ls:4"}


def test_posteriors_are_versioned_and_decisions_kept(store: Store) -> None:
    round_id = store.start_round("aggregation", {"aggregator": "GapDawidSkene"})
    p = Posterior("b1", (0.0, 0.1, 0.9, 0.0, 0.0), 2, (dt.date(2017, 3, 1), dt.date(2017, 4, 1)), 0.9, 2,
                  Status.IN_REVIEW, None)  # fmt: skip
    assert store.save_posteriors([p], aggregator="GapDawidSkene", round_id=round_id) == {"b1": 1}
    q = Posterior(
        "b1", (0.0, 0.0, 1.0, 0.0, 0.0), 2, (dt.date(2017, 3, 1), None), 1.0, 3, Status.SETTLED, "m@2"
    )
    assert store.save_posteriors([q]) == {"b1": 2}
    assert store.latest_posteriors()["b1"] == q
    assert [v for v, _ in store.posterior_history("b1")] == [1, 2]
    d = decide(BuildingEvidence("b1", q.probs, 3, 3))
    store.record_decisions([d], round_id=round_id)
    store.finish_round(round_id, "1 settled")
    assert store.decisions("b1") == [d]
    with pytest.raises(StoreError, match="unknown buildings"):
        store.save_posteriors([Posterior("zz", (1.0, 0.0), 0, (None, None), 1.0, 0, Status.UNLABELLED, None)])
    with pytest.raises(StoreError, match="round 99"):
        store.finish_round(99)


def test_bad_url_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="bad store URL"):
        Store.open("nonsense://")


@pytest.mark.integration
def test_both_postgresql_url_forms_open_the_store(postgres: LivePostgres) -> None:
    # the locked driver is psycopg (3); SQLAlchemy 2.1 also picks it for a plain postgresql:// URL
    url = postgres.create_database()
    assert url.startswith("postgresql+psycopg://")
    Store.open(url).add_buildings(["b1"], n_dates=2)
    plain = Store.open(url.replace("postgresql+psycopg://", "postgresql://", 1))
    assert plain.building_dates() == {"b1": 2}
    with pytest.raises(MigrationError, match="cannot migrate the store at postgresql"):
        Store.open(postgres.url("no_such_database"))


def test_updates_supersede_and_retractions_keep_history(store: Store) -> None:
    first = Annotation("b1", "v1", "labelstudio", (IN, IN, D, D), WHEN, "ls:7")
    assert store.add_annotations([first]).inserted == ("ls:7",)
    edited = Annotation("b1", "v1", "labelstudio", (IN, D, D, D), WHEN + dt.timedelta(minutes=5), "ls:7")

    # Without allow_updates a changed annotation is a conflicting duplicate: quarantined, stored one kept.
    refused = store.add_annotations([edited])
    assert [r.external_id for r in refused.quarantined] == ["ls:7"]
    assert store.annotations()[0].states == first.states

    report = store.add_annotations([edited], allow_updates=True)
    assert report.updated == ("ls:7",)
    assert store.annotations()[0].states == edited.states
    (revision, states, _, reason) = store.revisions("ls:7")[0]
    assert (revision, states) == (1, first.states) and "superseded" in reason

    # An older edit, or one claimed by another volunteer, never overwrites. Each arrives alone, so batch
    # validation (one external id, two volunteers) cannot refuse them first: the update rules must (issue #11).
    stale = Annotation("b1", "v1", "labelstudio", (IN, IN, IN, D), WHEN, "ls:7")
    late = store.add_annotations([stale], allow_updates=True)
    assert (late.updated, late.stale, late.quarantined) == ((), ("ls:7",), ())
    assert store.annotations()[0].states == edited.states
    assert "late update" in store.revisions("ls:7")[-1][3]  # kept, not applied
    thief = Annotation("b1", "v2", "labelstudio", (IN, IN, IN, D), WHEN + dt.timedelta(hours=1), "ls:7")
    stolen = store.add_annotations([thief], allow_updates=True)
    assert stolen.updated == () and [r.external_id for r in stolen.quarantined] == ["ls:7"]
    assert "different content" in stolen.quarantined[0].reason
    assert store.annotations()[0].states == edited.states

    assert store.retract(["ls:7", "ls:unknown"], "deleted in Label Studio") == ["ls:7"]
    assert store.retract(["ls:7"], "again") == []
    assert store.annotations() == []
    kept = store.annotations(include_retracted=True)
    assert [a.external_id for a in kept] == ["ls:7"]


def test_revisions_are_keyed_on_content_not_on_the_submission_time(store: Store) -> None:
    first = Annotation("b1", "v1", "labelstudio", (IN, IN, D, D), WHEN, "ls:8", comment="roof gone")
    store.add_annotations([first])
    resaved = Annotation("b1", "v1", "labelstudio", (IN, IN, D, D), WHEN + dt.timedelta(days=1), "ls:8",
                         comment="roof gone")  # fmt: skip
    report = store.add_annotations([resaved], allow_updates=True)
    assert (report.unchanged, report.updated) == (("ls:8",), ())
    assert store.revisions("ls:8") == []
    recommented = Annotation("b1", "v1", "labelstudio", (IN, IN, D, D), WHEN + dt.timedelta(days=2), "ls:8",
                             comment="roof and walls gone")  # fmt: skip
    assert store.add_annotations([recommented], allow_updates=True).updated == ("ls:8",)
    assert store.annotations()[0].comment == "roof and walls gone"  # volunteers' comments are kept
    # the same stale content twice is archived once
    old = Annotation("b1", "v1", "labelstudio", (IN, D, D, D), WHEN - dt.timedelta(days=1), "ls:8")
    store.add_annotations([old], allow_updates=True)
    store.add_annotations([old], allow_updates=True)
    assert [r for r in store.revisions("ls:8") if "late update" in r[3]] != []
    assert len([r for r in store.revisions("ls:8") if "late update" in r[3]]) == 1


def test_a_retraction_stays_retracted_when_an_older_update_arrives_late(store: Store) -> None:
    store.add_annotations([Annotation("b1", "v1", "labelstudio", (IN, IN, D, D), WHEN, "ls:9")])
    assert store.retract(["ls:9"], "deleted in Label Studio") == ["ls:9"]
    # the ANNOTATION_UPDATED webhook of an edit made before the deletion arrives after it
    late = Annotation("b1", "v1", "labelstudio", (IN, D, D, D), WHEN + dt.timedelta(minutes=1), "ls:9")
    report = store.add_annotations([late], allow_updates=True)
    assert report.kept_retracted == ("ls:9",) and report.updated == ()
    assert store.annotations() == []
    (kept,) = store.annotations(include_retracted=True)
    assert kept.states == (IN, IN, D, D)
    assert "retraction stands" in store.revisions("ls:9")[-1][3]


def test_the_cursor_is_written_in_the_same_transaction_as_the_annotations(store: Store) -> None:
    a = Annotation("b1", "v1", "labelstudio", (IN, IN, D, D), WHEN, "ls:20")
    store.ingest([a], cursor=("lab", "c1"))
    assert store.cursor("lab") == "c1"
    # a pull that fails while storing stores nothing: neither its annotations nor its cursor
    b = Annotation("b2", "v1", "labelstudio", (IN, D, D, D), WHEN, "ls:21")
    with pytest.raises(StoreError, match="round 999"):
        store.ingest([b], cursor=("lab", "c2"), round_stage=(999, "pulled"))
    assert store.cursor("lab") == "c1"
    assert [x.external_id for x in store.annotations()] == ["ls:20"]
    assert store.cursor("other") is None  # a fresh store or cursor reads everything again


def test_quarantined_items_keep_their_payload_once(store: Store) -> None:
    item = QuarantineItem("ls:30", "b1", "conversion", "task 4", "annotation 30: no date has a state",
                          {"annotation": {"id": 30, "result": []}})  # fmt: skip
    assert len(store.ingest([], quarantine=[item]).quarantined) == 1
    store.ingest([], quarantine=[item])  # pulled again (sync --full): kept once
    (kept,) = store.quarantine()
    assert kept.payload == {"annotation": {"id": 30, "result": []}} and "no date" in kept.reason


def test_concurrent_inserts_of_the_same_annotation_do_not_raise(store_url: str) -> None:
    url = store_url
    Store.open(url).add_buildings([f"b{i}" for i in range(40)], n_dates=4)
    batch = [Annotation(f"b{i}", "v1", "labelstudio", (IN, IN, D, D), WHEN, f"ls:{i}") for i in range(40)]
    reports: list[object] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    stores = [
        Store.open(url) for _ in range(4)
    ]  # own engines, own connections: like a webhook and a sync pass

    def writer(store: Store) -> None:
        barrier.wait()
        try:
            for start in range(0, 40, 5):
                reports.append(store.add_annotations(batch[start : start + 5], allow_updates=True))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    inserted = [e for r in reports for e in r.inserted]  # type: ignore[attr-defined]
    assert sorted(inserted, key=lambda e: int(e[3:])) == [a.external_id for a in batch]  # each exactly once
    assert len(Store.open(url).annotations()) == 40


def test_campaign_tables_round_trip(store: Store) -> None:
    store.create_campaign("c", "verify", "simulated", {"batch_size": 3})
    with pytest.raises(StoreError, match="already exists"):
        store.create_campaign("c", "estimate", "simulated", {})
    rid = store.start_round("campaign", {}, campaign="c")
    rows = [{"request_key": "b1#1", "building_id": "b1", "kind": "seed", "acquisition": "random", "score": 0.5,
             "rank": 0}]  # fmt: skip
    assert store.add_requests("c", rid, rows, stage="selected") == 1
    assert store.add_requests("c", rid, rows) == 0  # idempotent on the request key
    (req,) = store.requests("c")
    store.mark_requests([req.id], "open", task_refs={req.id: "t1"})
    assert store.requests("c", status="open")[0].task_ref == "t1"
    assert store.round(rid).stage == "selected" and store.open_round("c") is not None
    assert store.try_lock("c", "h1", 1, "host") and not store.try_lock("c", "h2", 2, "host")
    assert store.lock("c").holder == "h1"  # type: ignore[union-attr]
    assert store.release_lock("c", "h2") is False and store.release_lock("c", "h1") is True


def test_the_campaign_lock_refuses_a_live_holder_and_takes_over_a_dead_one(store: Store) -> None:
    with CampaignLock(store, "c", heartbeat_s=0.5, stale_after_s=30) as held:
        with pytest.raises(CampaignLockedError, match=f"pid {os.getpid()} on host"):
            CampaignLock(store, "c").acquire()
        held.check()
    assert store.lock("c") is None
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    assert store.try_lock("c", "killed-loop", int(gone.stdout), socket.gethostname())
    lock = CampaignLock(store, "c", heartbeat_s=0.5, stale_after_s=30).acquire()
    assert lock.took_over is not None and lock.took_over.holder == "killed-loop"
    store.release_lock("c")  # `campaign unlock` while it runs: the holder notices and stops
    with pytest.raises(LockLostError, match="lost its lock"):
        lock.check()
    lock.release()
