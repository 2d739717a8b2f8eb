"""The store of record: migrations from code, idempotent annotations, quarantine, versions, decisions."""

from __future__ import annotations

import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from active_learning.errors import MigrationError, StoreError
from active_learning.posterior import Posterior, Status
from active_learning.retirement import BuildingEvidence, decide
from active_learning.schema import Annotation, State
from active_learning.store import Base, Store, upgrade_to_head
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
        assert MigrationContext.configure(conn).get_current_revision() == "0002"


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

    # An older edit, or one claimed by another volunteer, never overwrites.
    stale = Annotation("b1", "v1", "labelstudio", (IN, IN, IN, D), WHEN, "ls:7")
    thief = Annotation("b1", "v2", "labelstudio", (IN, IN, IN, D), WHEN + dt.timedelta(hours=1), "ls:7")
    assert store.add_annotations([stale, thief], allow_updates=True).updated == ()
    assert store.annotations()[0].states == edited.states

    assert store.retract(["ls:7", "ls:unknown"], "deleted in Label Studio") == ["ls:7"]
    assert store.retract(["ls:7"], "again") == []
    assert store.annotations() == []
    kept = store.annotations(include_retracted=True)
    assert [a.external_id for a in kept] == ["ls:7"]
