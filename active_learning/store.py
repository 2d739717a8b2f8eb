"""The store of record (SQLAlchemy 2.0): buildings, annotations, quarantine, posteriors, decisions, rounds, and
the state of every active-learning campaign.

SQLite by default, PostgreSQL (or anything SQLAlchemy speaks) by URL. The schema is owned by the Alembic
migrations in ``active_learning/migrations``; :func:`upgrade_to_head` applies them from code, no CLI or ini
file needed, and :meth:`Store.open` always does so first.

Annotations are idempotent on their external id and inserted with the dialect's insert-or-ignore, so two
writers storing the same annotation at once (a webhook and a sync pass) never collide. An external id that
comes back with other content is an *update* when allowed (the old content moves to ``annotation_revisions``),
revisions are keyed on content (states and comment), not on submission time, and an older update that arrives
late is archived without being applied. A retracted annotation (deleted at its source) stays retracted
whatever arrives after. Everything refused at the door (unknown building, date out of range, unknown state,
self-contradicting gold, a Label Studio result that could not be converted, ...) is kept in the quarantine
table with its full payload and the reason, so nothing received is lost. A sync cursor is written in the same
transaction as the annotations it came with (:meth:`Store.ingest`), so a crash can only repeat a pull, never
skip one.

Campaign state lives here too, never in a labeler: campaigns and their configuration, rounds with their stage,
inputs and summary (so a killed round resumes where it stopped), every review request with its acquisition
score and its task on the labeler's side (``review_requests``), the audit buildings, model events (trained,
promoted, kept) and the campaign lock (one row per campaign, taken atomically, see ``active_learning.lock``).

Tables: ``buildings``, ``annotations`` (+ ``comment``), ``annotation_revisions``, ``quarantine``,
``posteriors``, ``decisions`` (+ ``reviews``: every review's interval and verdict, ``model_version``),
``rounds`` (+ ``campaign``, ``stage``, ``summary``, ``model_version``), ``sync_cursors``, ``campaigns``,
``review_requests``, ``campaign_locks``, ``audit_buildings``, ``model_events``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any, cast

import pandas as pd
from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    create_engine,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from active_learning.errors import MigrationError, StoreError
from active_learning.posterior import Posterior, Status
from active_learning.retirement import Decision, ReviewInterval
from active_learning.schema import (
    COL_EXTERNAL_ID,
    Annotation,
    Reject,
    State,
    annotations_to_table,
    table_to_annotations,
    validate_table,
)

__all__ = [
    "AnnotationRecord",
    "Base",
    "BuildingRecord",
    "CampaignRecord",
    "IngestReport",
    "LockRecord",
    "ModelEvent",
    "PosteriorRecord",
    "QuarantineItem",
    "QuarantineRecord",
    "RequestRecord",
    "RoundRecord",
    "Store",
    "StoredDecision",
    "alembic_config",
    "upgrade_to_head",
]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_CHUNK = 500
_MIGRATING = threading.Lock()  # Alembic's migration context is process-global: one migration at a time


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base of the store's tables (the migrations create them)."""


class BuildingRow(Base):
    __tablename__ = "buildings"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    n_dates: Mapped[int] = mapped_column(Integer)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class RoundRow(Base):
    __tablename__ = "rounds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    note: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    campaign: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    stage: Mapped[str | None] = mapped_column(String(32), nullable=True)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(256), nullable=True)


class AnnotationRow(Base):
    __tablename__ = "annotations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    external_id: Mapped[str] = mapped_column(String(256), unique=True)
    building_id: Mapped[str] = mapped_column(ForeignKey("buildings.id"), index=True)
    volunteer_id: Mapped[str] = mapped_column(String(128), index=True)
    source: Mapped[str] = mapped_column(String(32))
    states: Mapped[list[str]] = mapped_column(JSON)
    submitted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    content_hash: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id"), nullable=True)
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    retracted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    retracted_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    comment: Mapped[str] = mapped_column(Text, default="", server_default="")


class AnnotationRevisionRow(Base):
    """An earlier (or a stale, never applied) content of an annotation, kept when an update arrived."""

    __tablename__ = "annotation_revisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    external_id: Mapped[str] = mapped_column(String(256), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    states: Mapped[list[str]] = mapped_column(JSON)
    submitted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    content_hash: Mapped[str] = mapped_column(String(64))
    superseded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    reason: Mapped[str] = mapped_column(Text)


class QuarantineRow(Base):
    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    external_id: Mapped[str] = mapped_column(String(256), index=True)
    building_id: Mapped[str] = mapped_column(String(128))
    field: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class PosteriorRow(Base):
    __tablename__ = "posteriors"
    __table_args__ = (UniqueConstraint("building_id", "version", name="uq_posterior_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    building_id: Mapped[str] = mapped_column(ForeignKey("buildings.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    probs: Mapped[list[float]] = mapped_column(JSON)
    map_gap: Mapped[int] = mapped_column(Integer)
    interval_start: Mapped[str | None] = mapped_column(String(10), nullable=True)
    interval_end: Mapped[str | None] = mapped_column(String(10), nullable=True)
    confidence: Mapped[float] = mapped_column(Float)
    n_reviews: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    model_version: Mapped[str | None] = mapped_column(String(256), nullable=True)
    aggregator: Mapped[str] = mapped_column(String(256), default="")
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id"), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class DecisionRow(Base):
    __tablename__ = "decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    building_id: Mapped[str] = mapped_column(ForeignKey("buildings.id"), index=True)
    status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    flags: Mapped[list[str]] = mapped_column(JSON)
    map_gap: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float] = mapped_column(Float)
    n_reviews: Mapped[int] = mapped_column(Integer)
    n_consistent: Mapped[int] = mapped_column(Integer)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id"), nullable=True)
    decided_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    reviews: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(256), nullable=True)


class SyncCursorRow(Base):
    """Where a pull from a labeler (a Label Studio project, a campaign's labeler) stopped."""

    __tablename__ = "sync_cursors"
    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class CampaignRow(Base):
    __tablename__ = "campaigns"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    mode: Mapped[str] = mapped_column(String(32))
    labeler: Mapped[str] = mapped_column(String(512))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ReviewRequestRow(Base):
    """One review asked of the labeler: why (acquisition, score, rank) and where it stands on the labeler."""

    __tablename__ = "review_requests"
    __table_args__ = (UniqueConstraint("campaign", "request_key", name="uq_review_request_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign: Mapped[str] = mapped_column(String(128), index=True)
    request_key: Mapped[str] = mapped_column(String(256))
    building_id: Mapped[str] = mapped_column(ForeignKey("buildings.id"), index=True)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(32))
    acquisition: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    rank: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32), index=True)
    task_ref: Mapped[str | None] = mapped_column(String(256), nullable=True)
    answer_external_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    pushed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    close_reason: Mapped[str] = mapped_column(Text, default="", server_default="")


class CampaignLockRow(Base):
    __tablename__ = "campaign_locks"
    campaign: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    pid: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(256))
    acquired_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class AuditBuildingRow(Base):
    """A building drawn into a campaign's audit set (held out of training, or a model-settled sample)."""

    __tablename__ = "audit_buildings"
    campaign: Mapped[str] = mapped_column(String(128), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32), primary_key=True)
    building_id: Mapped[str] = mapped_column(ForeignKey("buildings.id"), primary_key=True)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id"), nullable=True)
    added_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ModelEventRow(Base):
    """A model decision of a campaign: trained a candidate, promoted it, kept the champion, skipped training."""

    __tablename__ = "model_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign: Mapped[str] = mapped_column(String(128), index=True)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(32))
    model_version: Mapped[str | None] = mapped_column(String(256), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


@dataclass(frozen=True)
class IngestReport:
    """What :meth:`Store.ingest` (or :meth:`Store.add_annotations`) did, in external ids.

    Attributes:
        inserted: stored now.
        unchanged: already stored with the same content (idempotent repeats).
        quarantined: refused annotations with their reasons (stored in the quarantine table).
        updated: stored content superseded by an update (``allow_updates``).
        stale: updates older than the stored content: archived as revisions, not applied.
        kept_retracted: arrived for an annotation retracted earlier: archived, the retraction stands.
        retracted: retracted now.
    """

    inserted: tuple[str, ...]
    unchanged: tuple[str, ...]
    quarantined: tuple[Reject, ...]
    updated: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()
    kept_retracted: tuple[str, ...] = ()
    retracted: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        """How many external ids went each way."""
        return {
            "inserted": len(self.inserted),
            "unchanged": len(self.unchanged),
            "quarantined": len(self.quarantined),
            "updated": len(self.updated),
            "stale": len(self.stale),
            "kept_retracted": len(self.kept_retracted),
            "retracted": len(self.retracted),
        }


@dataclass(frozen=True)
class QuarantineItem:
    """Something received that could not become an annotation (e.g. a Label Studio result that failed
    conversion), to be kept with its payload.

    Attributes:
        external_id: its idempotency key, when it has one.
        building_id: the building it was about, as received.
        field: what was wrong.
        value: the offending value, as text.
        reason: why it was refused and how to fix it.
        payload: everything received, as JSON.
    """

    external_id: str
    building_id: str
    field: str
    value: str
    reason: str
    payload: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class QuarantineRecord:
    """A refused annotation as stored: the reason and the full payload received."""

    external_id: str
    building_id: str
    field: str
    value: str
    reason: str
    payload: dict[str, Any]
    received_at: dt.datetime


@dataclass(frozen=True)
class StoredDecision:
    """A decision as stored: the decision (with every review's interval), its round, time and model."""

    decision: Decision
    round_id: int | None
    decided_at: dt.datetime
    model_version: str | None


@dataclass(frozen=True)
class RoundRecord:
    """One round as stored.

    Attributes:
        id: round id.
        kind: ``campaign``, ``aggregation``, ``simulated-crowd``, ...
        campaign: the campaign it belongs to, or None.
        stage: the last step a campaign round completed (``active_learning.loop.STAGES``); None for others.
        params: its inputs (configuration, acquisition, policy, ...).
        summary: its counts (annotations by fate, statuses, selected ids with scores, model events, ...).
        model_version: the champion it used.
        note: a line for people.
    """

    id: int
    kind: str
    campaign: str | None
    stage: str | None
    params: dict[str, Any]
    summary: dict[str, Any]
    model_version: str | None
    note: str
    started_at: dt.datetime
    finished_at: dt.datetime | None


@dataclass(frozen=True)
class CampaignRecord:
    """A campaign: its name, mode (``verify`` or ``estimate``), labeler spec and configuration."""

    name: str
    mode: str
    labeler: str
    config: dict[str, Any]
    created_at: dt.datetime
    mlflow_run_id: str | None


@dataclass(frozen=True)
class RequestRecord:
    """One review request as stored.

    Attributes:
        id: row id.
        request_key: the campaign-unique key the labeler dedupes on (``<building>#<n>``).
        building_id: the building asked about.
        round_id: the round that selected it.
        kind: ``acquired``, ``audit`` (random share), ``seed`` or ``estimate_audit``.
        acquisition: the scoring function that ranked it.
        score: its acquisition score.
        rank: its place in the round's batch.
        status: ``to_push``, ``open``, ``answered``, ``to_withdraw``, ``withdrawn``, ``gone``.
        task_ref: the labeler's task reference, once pushed.
        answer_external_id: the annotation that answered it.
        close_reason: why it was closed.
    """

    id: int
    request_key: str
    building_id: str
    round_id: int | None
    kind: str
    acquisition: str
    score: float
    rank: int
    status: str
    task_ref: str | None
    answer_external_id: str | None
    created_at: dt.datetime
    pushed_at: dt.datetime | None
    closed_at: dt.datetime | None
    close_reason: str


@dataclass(frozen=True)
class LockRecord:
    """The holder of a campaign lock."""

    campaign: str
    holder: str
    pid: int
    host: str
    acquired_at: dt.datetime
    heartbeat_at: dt.datetime


@dataclass(frozen=True)
class ModelEvent:
    """A model decision of a campaign (``trained``, ``promoted``, ``kept``, ``skipped``)."""

    id: int
    campaign: str
    round_id: int | None
    kind: str
    model_version: str | None
    detail: dict[str, Any]
    created_at: dt.datetime


def alembic_config(url: str) -> Any:
    """An Alembic ``Config`` for this package's migrations and ``url``, built in code (no alembic.ini)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_to_head(url_or_engine: str | Engine) -> None:
    """Apply every migration up to the head revision (creates the schema on a fresh database).

    Raises:
        MigrationError: the database cannot be reached or migrated.
    """
    from alembic import command

    engine = _engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    try:
        with _MIGRATING, engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
    except OperationalError as exc:
        raise MigrationError(
            f"cannot migrate the store at {engine.url.render_as_string(hide_password=True)}: {exc.orig}; "
            "check the URL and that the database is reachable and writable"
        ) from None


def _engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            # a writer waits up to 30 s for another one (webhook, sync, campaign) instead of failing at once
            return create_engine(url, connect_args={"timeout": 30})
        return create_engine(url)
    except (ArgumentError, ModuleNotFoundError) as exc:
        raise StoreError(
            f"bad store URL {url!r} ({exc}); use e.g. sqlite:///path.db or "
            "postgresql+psycopg://user:password@host:5432/database"
        ) from None


def content_hash(a: Annotation) -> str:
    """The identity of an annotation's content: building, volunteer, source, states and comment.

    The submission time is not part of it: the same answer re-saved (or delivered by a webhook with a slightly
    different time stamp) is the same content, not a new revision.
    """
    body = json.dumps(
        [a.building_id, a.volunteer_id, a.source, [State(s).label for s in a.states], a.comment or ""]
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _iso(when: dt.datetime) -> str:
    ts = pd.Timestamp(when)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.isoformat()


def _stamp(when: dt.datetime) -> dt.datetime:
    return pd.Timestamp(_iso(when)).to_pydatetime()


def _payload(a: Annotation) -> dict[str, Any]:
    return {
        "building_id": a.building_id,
        "volunteer_id": a.volunteer_id,
        "source": a.source,
        "states": [s.label if isinstance(s, State) else str(s) for s in a.states],
        "submitted_at": str(a.submitted_at),
        "external_id": a.external_id,
        "comment": a.comment,
    }


def _dialect_insert(dialect: str) -> Any:
    """The dialect's INSERT construct, which has ``on_conflict_do_nothing`` (SQLite and PostgreSQL)."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    from sqlalchemy.dialects.postgresql import insert as postgresql_insert

    return postgresql_insert


def _insert_ignore(session: Session, model: type[Base], rows: list[dict[str, Any]], key: str) -> set[Any]:
    """Insert rows, skipping those whose ``key`` (a unique column) is already stored; returns the keys inserted.

    Uses the dialect's ``ON CONFLICT DO NOTHING`` (SQLite, PostgreSQL), so a concurrent writer inserting the same
    row is not an error; other dialects fall back to one savepoint per row.
    """
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    column = getattr(model, key)
    if dialect in ("sqlite", "postgresql"):
        stmt = _dialect_insert(dialect)(model).on_conflict_do_nothing(index_elements=[key]).returning(column)
        return {r[0] for r in session.execute(stmt, rows).all()}
    done: set[Any] = set()
    for row in rows:
        try:
            with session.begin_nested():
                session.add(model(**row))
            done.add(row[key])
        except IntegrityError:
            continue
    return done


class Store:
    """The store of record on one database.

    Args:
        engine: a SQLAlchemy engine whose database is at the head revision (use :meth:`open`).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect to ``url`` and migrate it to the head revision (the default URL is ``Settings().database_url``)."""
        engine = _engine(url)
        upgrade_to_head(engine)
        return cls(engine)

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    # -- buildings ---------------------------------------------------------------------------------------------

    def add_buildings(
        self,
        building_ids: Iterable[str],
        n_dates: int,
        attributes: dict[str, Any] | Mapping[str, dict[str, Any]] | None = None,
        *,
        per_building: bool = False,
    ) -> int:
        """Register buildings (already known ids are left as they are); returns how many were new.

        Args:
            building_ids: the buildings.
            n_dates: their number of dates.
            attributes: one dict for every building, or with ``per_building`` a mapping id -> its attributes.
        """
        ids = list(dict.fromkeys(str(b) for b in building_ids))
        per: Mapping[str, dict[str, Any]] = attributes if per_building and attributes is not None else {}
        shared = {} if per_building or attributes is None else dict(attributes)
        rows = [
            {"id": b, "n_dates": n_dates, "attributes": dict(per.get(b, shared)), "created_at": _now()}
            for b in ids
        ]
        with Session(self.engine) as session, session.begin():
            new = set()
            for start in range(0, len(rows), _CHUNK):
                new |= _insert_ignore(session, BuildingRow, rows[start : start + _CHUNK], "id")
        return len(new)

    def building_attributes(self) -> dict[str, dict[str, Any]]:
        """Building id -> the attributes it was registered with."""
        with Session(self.engine) as session:
            rows = session.execute(select(BuildingRow.id, BuildingRow.attributes)).tuples().all()
            return {str(b): dict(a or {}) for b, a in rows}

    def building_dates(self, building_ids: Iterable[str] | None = None) -> dict[str, int]:
        """Building id -> its number of dates, of every building or only of ``building_ids`` (the ones stored).

        A webhook brings one annotation: reading a city's 26,000 buildings for it took 0.2 s, so a few ids are
        looked up by key (more than :data:`_CHUNK` read the whole table, which stays under any bound on
        the number of query parameters).
        """
        query = select(BuildingRow.id, BuildingRow.n_dates)
        wanted = None if building_ids is None else set(building_ids)
        if wanted is not None and len(wanted) <= _CHUNK:
            query = query.where(BuildingRow.id.in_(sorted(wanted)))
        with Session(self.engine) as session:
            dates = dict(session.execute(query).tuples().all())
        return dates if wanted is None else {b: n for b, n in dates.items() if b in wanted}

    # -- annotations -------------------------------------------------------------------------------------------

    def add_annotations(
        self, annotations: Sequence[Annotation], round_id: int | None = None, *, allow_updates: bool = False
    ) -> IngestReport:
        """Store annotations idempotently; refuse bad ones into the quarantine with their reasons.

        Args:
            annotations: the annotations received.
            round_id: the round they belong to, if any.
            allow_updates: an external id that comes back with other content from the same volunteer is an
                *update* (a volunteer edited the review in Label Studio): the stored content moves to
                ``annotation_revisions`` and the new one replaces it, unless it is older than the stored one
                (then it is archived, not applied). Without it (or when the volunteer or building disagree) it
                is quarantined as a conflicting duplicate.
        """
        return self.ingest(annotations, round_id=round_id, allow_updates=allow_updates)

    def ingest(
        self,
        annotations: Sequence[Annotation],
        *,
        round_id: int | None = None,
        allow_updates: bool = False,
        retract: Iterable[str] = (),
        retract_reason: str = "deleted at the source",
        quarantine: Sequence[QuarantineItem] = (),
        cursor: tuple[str, str] | None = None,
        request_updates: Mapping[int, tuple[str, str | None, str]] | None = None,
        round_stage: tuple[int, str] | None = None,
        round_summary: Mapping[str, Any] | None = None,
        validated: bool = False,
    ) -> IngestReport:
        """Store one pull in one transaction: annotations, retractions, quarantined items, the cursor.

        Either everything is stored or nothing is, so a pull that crashes is repeated, never half-applied.

        Args:
            annotations: annotations received (see :meth:`add_annotations` for ``allow_updates``).
            round_id: the round they belong to.
            allow_updates: accept changed content for a known external id as an update.
            retract: external ids deleted at their source.
            retract_reason: why they were retracted.
            quarantine: received items that could not become annotations (kept with their payload).
            cursor: ``(name, value)``: where this pull stopped, written with the annotations.
            request_updates: review request id -> (new status, answering external id or None, reason): the
                campaign's bookkeeping of answered or vanished tasks, written with the annotations.
            round_stage: ``(round id, stage)`` reached when this transaction commits.
            round_summary: entries merged into that round's summary, with ``ingest`` (this report's counts).
            validated: the annotations come out of :meth:`validate` already (the check is not repeated).
        """
        by_ext: dict[str, list[Annotation]] = {}
        for a in annotations:
            by_ext.setdefault(str(a.external_id), []).append(a)
        clean, rejects = (list(annotations), []) if validated else self.validate(annotations)

        out: dict[str, list[str]] = {
            k: [] for k in ("inserted", "unchanged", "updated", "stale", "kept", "retracted")
        }
        with Session(self.engine) as session, session.begin():
            rows = [
                {"external_id": a.external_id, "building_id": a.building_id, "volunteer_id": a.volunteer_id,
                 "source": a.source, "states": [State(s).label for s in a.states],
                 "submitted_at": _stamp(a.submitted_at), "content_hash": content_hash(a), "comment": a.comment,
                 "round_id": round_id, "received_at": _now(), "revision": 1}
                for a in clean
            ]  # fmt: skip
            inserted: set[str] = set()
            for start in range(0, len(rows), _CHUNK):
                inserted |= _insert_ignore(
                    session, AnnotationRow, rows[start : start + _CHUNK], "external_id"
                )
            for a in clean:
                if a.external_id in inserted:
                    out["inserted"].append(a.external_id)
                    continue
                row = session.scalars(
                    select(AnnotationRow).where(AnnotationRow.external_id == a.external_id)
                ).one()
                digest = content_hash(a)
                if row.content_hash == digest:
                    out["unchanged"].append(a.external_id)
                elif (
                    not allow_updates
                    or row.volunteer_id != a.volunteer_id
                    or row.building_id != a.building_id
                ):
                    rejects.append(
                        Reject(a.external_id, a.building_id, COL_EXTERNAL_ID, a.external_id,
                               "duplicate external id with different content; the stored annotation is kept")
                    )  # fmt: skip
                elif row.retracted_at is not None:
                    _archive(session, row.external_id, row.revision, a, digest,
                             "arrived after the annotation was retracted; the retraction stands")  # fmt: skip
                    out["kept"].append(a.external_id)
                elif _stamp(a.submitted_at) < _stamp(_aware(row.submitted_at)):
                    _archive(session, row.external_id, row.revision, a, digest,
                             "older than the stored content (a late update); not applied")  # fmt: skip
                    out["stale"].append(a.external_id)
                else:
                    _archive_row(session, row, "superseded by an update of the same annotation")
                    row.states = [State(s).label for s in a.states]
                    row.submitted_at = _stamp(a.submitted_at)
                    row.content_hash = digest
                    row.comment = a.comment
                    row.revision += 1
                    out["updated"].append(a.external_id)
            ids = list(dict.fromkeys(retract))
            for start in range(0, len(ids), _CHUNK):
                for row in session.scalars(
                    select(AnnotationRow).where(
                        AnnotationRow.external_id.in_(ids[start : start + _CHUNK]),
                        AnnotationRow.retracted_at.is_(None),
                    )
                ).all():
                    row.retracted_at = _now()
                    row.retracted_reason = retract_reason
                    out["retracted"].append(row.external_id)
            kept = _quarantined_keys(
                session, [r.external_id for r in rejects] + [q.external_id for q in quarantine]
            )
            for r in rejects:
                if (r.external_id, r.field, r.reason) in kept:
                    continue  # received and refused before for the same reason: kept once
                kept.add((r.external_id, r.field, r.reason))
                for a in by_ext.get(r.external_id, []) or [None]:  # type: ignore[list-item]
                    session.add(
                        QuarantineRow(external_id=r.external_id, building_id=r.building_id, field=r.field,
                                      value=r.value, reason=r.reason, payload=_payload(a) if a is not None else {})
                    )  # fmt: skip
            for q in quarantine:
                if (q.external_id, q.field, q.reason) in kept:
                    continue
                kept.add((q.external_id, q.field, q.reason))
                session.add(
                    QuarantineRow(external_id=q.external_id, building_id=q.building_id, field=q.field,
                                  value=q.value, reason=q.reason, payload=dict(q.payload))
                )  # fmt: skip
            for request_id, (status, ext, reason) in (request_updates or {}).items():
                session.execute(
                    update(ReviewRequestRow)
                    .where(ReviewRequestRow.id == request_id)
                    .values(status=status, answer_external_id=ext, closed_at=_now(), close_reason=reason)
                )
            if cursor is not None:
                self._write_cursor(session, *cursor)
            report = IngestReport(
                inserted=tuple(out["inserted"]),
                unchanged=tuple(out["unchanged"]),
                quarantined=tuple(rejects)
                + tuple(Reject(q.external_id, q.building_id, q.field, q.value, q.reason) for q in quarantine),
                updated=tuple(out["updated"]),
                stale=tuple(out["stale"]),
                kept_retracted=tuple(out["kept"]),
                retracted=tuple(out["retracted"]),
            )
            if round_stage is not None:
                round_row = session.get(RoundRow, round_stage[0])
                if round_row is None:
                    raise StoreError(f"round {round_stage[0]} does not exist; start it with start_round")
                round_row.stage = round_stage[1]
                round_row.summary = {
                    **(round_row.summary or {}),
                    **(round_summary or {}),
                    "ingest": report.counts(),
                }
        return report

    def validate(self, annotations: Sequence[Annotation]) -> tuple[list[Annotation], list[Reject]]:
        """What :meth:`ingest` would accept and refuse, without writing: the clean annotations (trimmed to their
        building's dates, comments kept) and one reject per refused external id."""
        n_dates = self.building_dates(a.building_id for a in annotations)
        comments = {a.external_id: a.comment for a in annotations}
        rejects: list[Reject] = []
        sized = []
        for a in annotations:
            want = n_dates.get(a.building_id)
            if want is not None and len(a.states) != want:
                rejects.append(
                    Reject(a.external_id, a.building_id, "states", f"{len(a.states)} dates",
                           f"building has {want} dates; send one state per date")
                )  # fmt: skip
            else:
                sized.append(a)
        refused = {r.external_id for r in rejects}
        sized = [a for a in sized if a.external_id not in refused]
        checked = validate_table(
            annotations_to_table(sized), building_ids=n_dates, n_dates=max(n_dates.values(), default=None)
        )
        rejects.extend(checked.rejects)
        width = max(n_dates.values(), default=0)
        rebuilt = table_to_annotations(checked.table, width) if len(checked.table) else []
        clean = [
            _with_comment(_trim(a, n_dates[a.building_id]), comments.get(a.external_id, "")) for a in rebuilt
        ]
        return clean, rejects

    def retract(self, external_ids: Iterable[str], reason: str) -> list[str]:
        """Mark annotations as retracted (deleted at their source); they stay stored but leave aggregation.

        A retraction is final: updates of a retracted annotation that arrive later are archived, not applied.

        Returns:
            The external ids retracted now (unknown or already retracted ids are skipped).
        """
        return list(self.ingest([], retract=external_ids, retract_reason=reason).retracted)

    def revisions(self, external_id: str) -> list[tuple[int, tuple[State, ...], dt.datetime, str]]:
        """Earlier (or stale) contents of one annotation: (revision, states, submitted_at, reason), oldest first."""
        with Session(self.engine) as session:
            rows = session.scalars(
                select(AnnotationRevisionRow)
                .where(AnnotationRevisionRow.external_id == external_id)
                .order_by(AnnotationRevisionRow.id)
            ).all()
            return [
                (r.revision, tuple(State.parse(x) for x in r.states), _aware(r.submitted_at), r.reason)
                for r in rows
            ]

    def annotations(
        self, include_retracted: bool = False, *, building_id: str | None = None
    ) -> list[Annotation]:
        """Stored annotations (with their comments) in the order received; retracted ones only when asked."""
        with Session(self.engine) as session:
            query = select(AnnotationRow).order_by(AnnotationRow.id)
            if not include_retracted:
                query = query.where(AnnotationRow.retracted_at.is_(None))
            if building_id is not None:
                query = query.where(AnnotationRow.building_id == building_id)
            return [_annotation(r) for r in session.scalars(query).all()]

    def annotations_table(self) -> pd.DataFrame:
        """Every stored annotation (not retracted) as the validated long table."""
        return validate_table(annotations_to_table(self.annotations())).table

    def annotation_count(
        self, *, sources: Sequence[str] | None = None, include_retracted: bool = False
    ) -> int:
        """How many annotations are stored (optionally of some sources only)."""
        with Session(self.engine) as session:
            query = select(func.count(AnnotationRow.id))
            if sources is not None:
                query = query.where(AnnotationRow.source.in_(list(sources)))
            if not include_retracted:
                query = query.where(AnnotationRow.retracted_at.is_(None))
            return int(session.scalar(query) or 0)

    def reviewers(self) -> dict[str, set[str]]:
        """Building id -> the volunteers with a stored (not retracted) review of it."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(AnnotationRow.building_id, AnnotationRow.volunteer_id).where(
                    AnnotationRow.retracted_at.is_(None)
                )
            ).tuples()
            out: dict[str, set[str]] = {}
            for b, v in rows:
                out.setdefault(b, set()).add(v)
            return out

    def known_external_ids(self, external_ids: Iterable[str]) -> set[str]:
        """Which of these external ids are stored (retracted ones included)."""
        ids = list(dict.fromkeys(external_ids))
        found: set[str] = set()
        with Session(self.engine) as session:
            for start in range(0, len(ids), _CHUNK):
                found |= set(
                    session.scalars(
                        select(AnnotationRow.external_id).where(
                            AnnotationRow.external_id.in_(ids[start : start + _CHUNK])
                        )
                    )
                )
        return found

    def quarantine(self) -> list[QuarantineRecord]:
        """Every refused annotation with its reason and payload."""
        with Session(self.engine) as session:
            rows = session.scalars(select(QuarantineRow).order_by(QuarantineRow.id)).all()
            return [
                QuarantineRecord(
                    r.external_id,
                    r.building_id,
                    r.field,
                    r.value,
                    r.reason,
                    dict(r.payload),
                    _aware(r.received_at),
                )  # fmt: skip
                for r in rows
            ]

    # -- sync cursors ------------------------------------------------------------------------------------------

    def cursor(self, name: str) -> str | None:
        """The saved cursor of a pull (a Label Studio project, a campaign's labeler), or None before the first."""
        with Session(self.engine) as session:
            row = session.get(SyncCursorRow, name)
            return None if row is None else row.value

    def set_cursor(self, name: str, value: str) -> None:
        """Save a cursor on its own (a pull that brought nothing still moves it)."""
        with Session(self.engine) as session, session.begin():
            self._write_cursor(session, name, value)

    @staticmethod
    def _write_cursor(session: Session, name: str, value: str) -> None:
        row = session.get(SyncCursorRow, name)
        if row is None:
            session.add(SyncCursorRow(name=name, value=value, updated_at=_now()))
        else:
            row.value = value
            row.updated_at = _now()

    # -- rounds ------------------------------------------------------------------------------------------------

    def start_round(
        self, kind: str, params: dict[str, Any] | None = None, *, campaign: str | None = None
    ) -> int:
        """Open a round (acquisition, aggregation, retirement, a campaign round, ...) and return its id."""
        with Session(self.engine) as session, session.begin():
            row = RoundRow(kind=kind, params=params or {}, campaign=campaign, summary={})
            session.add(row)
            session.flush()
            return row.id

    def finish_round(self, round_id: int, note: str = "") -> None:
        """Close a round with a note."""
        with Session(self.engine) as session, session.begin():
            row = session.get(RoundRow, round_id)
            if row is None:
                raise StoreError(f"round {round_id} does not exist; start it with start_round")
            row.finished_at = _now()
            row.note = note

    def update_round(
        self,
        round_id: int,
        *,
        stage: str | None = None,
        summary: Mapping[str, Any] | None = None,
        model_version: str | None = None,
        note: str | None = None,
        finished: bool = False,
    ) -> None:
        """Record a round's progress: the stage it completed, summary entries (merged), its model, its end."""
        with Session(self.engine) as session, session.begin():
            row = session.get(RoundRow, round_id)
            if row is None:
                raise StoreError(f"round {round_id} does not exist; start it with start_round")
            if stage is not None:
                row.stage = stage
            if summary:
                row.summary = {**(row.summary or {}), **summary}
            if model_version is not None:
                row.model_version = model_version
            if note is not None:
                row.note = note
            if finished:
                row.finished_at = _now()

    def round(self, round_id: int) -> RoundRecord:
        """One round."""
        with Session(self.engine) as session:
            row = session.get(RoundRow, round_id)
            if row is None:
                raise StoreError(f"round {round_id} does not exist")
            return _round(row)

    def rounds(self, campaign: str | None = None) -> list[RoundRecord]:
        """Every round (of one campaign when given), oldest first."""
        with Session(self.engine) as session:
            query = select(RoundRow).order_by(RoundRow.id)
            if campaign is not None:
                query = query.where(RoundRow.campaign == campaign)
            return [_round(r) for r in session.scalars(query).all()]

    def open_round(self, campaign: str) -> RoundRecord | None:
        """The campaign's unfinished round (a round that was interrupted), or None."""
        with Session(self.engine) as session:
            row = session.scalars(
                select(RoundRow)
                .where(RoundRow.campaign == campaign, RoundRow.finished_at.is_(None))
                .order_by(RoundRow.id.desc())
            ).first()
            return None if row is None else _round(row)

    # -- posteriors and decisions ------------------------------------------------------------------------------

    def save_posteriors(
        self, posteriors: Sequence[Posterior], *, aggregator: str = "", round_id: int | None = None
    ) -> dict[str, int]:
        """Store a new version of each building's posterior; returns building id -> version written."""
        self._require_buildings(p.building_id for p in posteriors)
        with Session(self.engine) as session, session.begin():
            return self._save_posteriors(session, posteriors, aggregator, round_id)

    @staticmethod
    def _save_posteriors(
        session: Session, posteriors: Sequence[Posterior], aggregator: str, round_id: int | None
    ) -> dict[str, int]:
        latest = dict(
            session.execute(
                select(PosteriorRow.building_id, func.max(PosteriorRow.version)).group_by(
                    PosteriorRow.building_id
                )
            )
            .tuples()
            .all()
        )
        versions = {}
        rows = []
        now = _now()
        for p in posteriors:
            version = int(latest.get(p.building_id) or 0) + 1
            latest[p.building_id] = version
            versions[p.building_id] = version
            lo, hi = p.interval
            rows.append(
                {"building_id": p.building_id, "version": version, "probs": [float(x) for x in p.probs],
                 "map_gap": int(p.map_gap), "interval_start": lo.isoformat() if lo else None,
                 "interval_end": hi.isoformat() if hi else None, "confidence": float(p.confidence),
                 "n_reviews": int(p.n_reviews), "status": str(p.status), "model_version": p.model_version,
                 "aggregator": aggregator, "round_id": round_id, "created_at": now}
            )  # fmt: skip
        for start in range(0, len(rows), _CHUNK):
            session.execute(
                insert(cast(Table, PosteriorRow.__table__)), rows[start : start + _CHUNK]
            )  # Core: one per chunk
        return versions

    def latest_posteriors(self) -> dict[str, Posterior]:
        """The newest posterior of every building that has one."""
        with Session(self.engine) as session:
            newest = (
                select(PosteriorRow.building_id, func.max(PosteriorRow.version).label("v"))
                .group_by(PosteriorRow.building_id)
                .subquery()
            )
            table = PosteriorRow.__table__
            rows = session.execute(  # plain rows, not ORM objects: this is read for every building, often
                select(table).join(
                    newest, (table.c.building_id == newest.c.building_id) & (table.c.version == newest.c.v)
                )
            ).all()
            return {r.building_id: _posterior(r) for r in rows}

    def posterior_history(self, building_id: str) -> list[tuple[int, Posterior]]:
        """Every stored version of one building's posterior, oldest first."""
        with Session(self.engine) as session:
            rows = session.scalars(
                select(PosteriorRow)
                .where(PosteriorRow.building_id == building_id)
                .order_by(PosteriorRow.version)
            ).all()
            return [(r.version, _posterior(r)) for r in rows]

    def record_decisions(
        self, decisions: Sequence[Decision], round_id: int | None = None, *, model_version: str | None = None
    ) -> None:
        """Store retirement decisions with their reasons, flags and every review's interval."""
        self._require_buildings(d.building_id for d in decisions)
        with Session(self.engine) as session, session.begin():
            self._record_decisions(session, decisions, round_id, model_version)

    @staticmethod
    def _record_decisions(
        session: Session, decisions: Sequence[Decision], round_id: int | None, model_version: str | None
    ) -> None:
        now = _now()
        rows = [
            {"building_id": d.building_id, "status": str(d.status), "reason": d.reason, "flags": list(d.flags),
             "map_gap": d.map_gap, "confidence": d.confidence, "n_reviews": d.n_reviews,
             "n_consistent": d.n_consistent, "round_id": round_id, "reviews": [r.as_dict() for r in d.reviews],
             "model_version": model_version, "decided_at": now}
            for d in decisions
        ]  # fmt: skip
        for start in range(0, len(rows), _CHUNK):
            session.execute(insert(cast(Table, DecisionRow.__table__)), rows[start : start + _CHUNK])

    def save_outcome(
        self,
        posteriors: Sequence[Posterior],
        decisions: Sequence[Decision],
        *,
        aggregator: str,
        round_id: int | None,
        model_version: str | None,
        withdraw: Iterable[str] = (),
        campaign: str | None = None,
        stage: str | None = None,
        summary: Mapping[str, Any] | None = None,
    ) -> None:
        """Posteriors, decisions, the open requests of settled buildings marked ``to_withdraw`` and the round's
        stage, in one transaction (a round killed here either decided or did not)."""
        self._require_buildings(p.building_id for p in posteriors)
        with Session(self.engine) as session, session.begin():
            self._save_posteriors(session, posteriors, aggregator, round_id)
            self._record_decisions(session, decisions, round_id, model_version)
            ids = list(dict.fromkeys(withdraw))
            if campaign is not None:
                for start in range(0, len(ids), _CHUNK):
                    session.execute(
                        update(ReviewRequestRow)
                        .where(
                            ReviewRequestRow.campaign == campaign,
                            ReviewRequestRow.building_id.in_(ids[start : start + _CHUNK]),
                            ReviewRequestRow.status.in_(["to_push", "open"]),
                        )
                        .values(status="to_withdraw", close_reason="building settled")
                    )
            if round_id is not None and (stage is not None or summary):
                row = session.get(RoundRow, round_id)
                assert row is not None
                if stage is not None:
                    row.stage = stage
                if summary:
                    row.summary = {**(row.summary or {}), **summary}
                if model_version is not None:
                    row.model_version = model_version

    def decisions(self, building_id: str | None = None) -> list[Decision]:
        """Stored decisions, oldest first, optionally for one building."""
        return [d.decision for d in self.decision_records(building_id)]

    def decision_records(
        self, building_id: str | None = None, *, round_id: int | None = None
    ) -> list[StoredDecision]:
        """Stored decisions with their round, time and model version, oldest first."""
        with Session(self.engine) as session:
            query = select(DecisionRow).order_by(DecisionRow.id)
            if building_id is not None:
                query = query.where(DecisionRow.building_id == building_id)
            if round_id is not None:
                query = query.where(DecisionRow.round_id == round_id)
            return [_stored_decision(r) for r in session.scalars(query).all()]

    def latest_decisions(self) -> dict[str, StoredDecision]:
        """The newest decision of every building that has one (what the service shows as its status)."""
        with Session(self.engine) as session:
            newest = (
                select(DecisionRow.building_id, func.max(DecisionRow.id).label("i"))
                .group_by(DecisionRow.building_id)
                .subquery()
            )
            table = DecisionRow.__table__
            rows = session.execute(select(table).join(newest, table.c.id == newest.c.i)).all()
            return {r.building_id: _stored_decision(r) for r in rows}

    def _require_buildings(self, ids: Iterable[str]) -> None:
        known = self.building_dates()
        missing = sorted({b for b in ids if b not in known})
        if missing:
            raise StoreError(f"unknown buildings {missing[:5]} ({len(missing)} in all); add_buildings first")

    # -- campaigns ---------------------------------------------------------------------------------------------

    def create_campaign(
        self, name: str, mode: str, labeler: str, config: Mapping[str, Any]
    ) -> CampaignRecord:
        """Register a campaign; an existing one with the same name is returned unchanged.

        Raises:
            StoreError: a campaign of this name exists with another mode or labeler.
        """
        with Session(self.engine) as session, session.begin():
            _insert_ignore(
                session,
                CampaignRow,
                [
                    {
                        "name": name,
                        "mode": mode,
                        "labeler": labeler,
                        "config": dict(config),
                        "created_at": _now(),
                    }
                ],
                "name",
            )
            row = session.get(CampaignRow, name)
            assert row is not None
            if row.mode != mode or row.labeler != labeler:
                raise StoreError(
                    f"campaign {name!r} already exists with mode {row.mode!r} and labeler {row.labeler!r} "
                    f"(asked: {mode!r}, {labeler!r}); pick another --name or keep its settings"
                )
            return _campaign(row)

    def campaign(self, name: str) -> CampaignRecord:
        """One campaign.

        Raises:
            StoreError: no campaign has this name.
        """
        with Session(self.engine) as session:
            row = session.get(CampaignRow, name)
            if row is None:
                known = list(session.scalars(select(CampaignRow.name)))
                raise StoreError(
                    f"no campaign named {name!r} in {self.url} (known: {known}); create it with "
                    "`striketracker campaign init`"
                )
            return _campaign(row)

    def campaigns(self) -> list[CampaignRecord]:
        """Every campaign, oldest first."""
        with Session(self.engine) as session:
            return [
                _campaign(r) for r in session.scalars(select(CampaignRow).order_by(CampaignRow.created_at))
            ]

    def set_campaign_run(self, name: str, mlflow_run_id: str) -> None:
        """Remember the campaign's parent MLflow run."""
        with Session(self.engine) as session, session.begin():
            row = session.get(CampaignRow, name)
            if row is None:
                raise StoreError(f"no campaign named {name!r}")
            row.mlflow_run_id = mlflow_run_id

    # -- review requests ---------------------------------------------------------------------------------------

    def add_requests(
        self, campaign: str, round_id: int, requests: Sequence[Mapping[str, Any]], *, stage: str | None = None
    ) -> int:
        """Record a round's selection as review requests (status ``to_push``), idempotent on the request key,
        and (with ``stage``) the round's stage in the same transaction; returns how many were new.

        Each request is a mapping with ``request_key, building_id, kind, acquisition, score, rank``.
        """
        rows = [
            {
                "campaign": campaign, "round_id": round_id, "status": "to_push", "created_at": _now(),
                "close_reason": "", **{k: r[k] for k in ("request_key", "building_id", "kind", "acquisition", "score", "rank")},
            }
            for r in requests
        ]  # fmt: skip
        with Session(self.engine) as session, session.begin():
            new = 0
            dialect = session.get_bind().dialect.name
            if dialect in ("sqlite", "postgresql"):
                for start in range(0, len(rows), _CHUNK):
                    stmt = (
                        _dialect_insert(dialect)(ReviewRequestRow)
                        .on_conflict_do_nothing(index_elements=["campaign", "request_key"])
                        .returning(ReviewRequestRow.id)
                    )
                    new += len(session.execute(stmt, rows[start : start + _CHUNK]).all())
            else:  # pragma: no cover - other dialects
                for r in rows:
                    try:
                        with session.begin_nested():
                            session.add(ReviewRequestRow(**r))
                        new += 1
                    except IntegrityError:
                        continue
            if stage is not None:
                row = session.get(RoundRow, round_id)
                assert row is not None
                row.stage = stage
        return new

    def requests(
        self,
        campaign: str,
        *,
        status: str | Sequence[str] | None = None,
        building_id: str | None = None,
        round_id: int | None = None,
    ) -> list[RequestRecord]:
        """A campaign's review requests, oldest first, filtered by status, building or round."""
        with Session(self.engine) as session:
            query = (
                select(ReviewRequestRow.__table__)  # plain rows: read several times a round
                .where(ReviewRequestRow.campaign == campaign)
                .order_by(ReviewRequestRow.id)
            )
            if status is not None:
                query = query.where(
                    ReviewRequestRow.status.in_([status] if isinstance(status, str) else list(status))
                )
            if building_id is not None:
                query = query.where(ReviewRequestRow.building_id == building_id)
            if round_id is not None:
                query = query.where(ReviewRequestRow.round_id == round_id)
            return [_request(r) for r in session.execute(query).all()]

    def mark_requests(
        self,
        ids: Iterable[int],
        status: str,
        *,
        task_refs: Mapping[int, str] | None = None,
        reason: str = "",
        round_id: int | None = None,
        stage: str | None = None,
    ) -> None:
        """Move requests to ``status`` (``open`` records the push time and task refs; closing states the close
        time and reason), and (with ``stage``) the round's stage, in one transaction."""
        ids = list(ids)
        now = _now()
        with Session(self.engine) as session, session.begin():
            for start in range(0, len(ids), _CHUNK):
                for row in session.scalars(
                    select(ReviewRequestRow).where(ReviewRequestRow.id.in_(ids[start : start + _CHUNK]))
                ).all():
                    row.status = status
                    if status == "open":
                        row.pushed_at = now
                        if task_refs and row.id in task_refs:
                            row.task_ref = task_refs[row.id]
                    elif status in ("withdrawn", "gone", "answered"):
                        row.closed_at = now
                        row.close_reason = reason or row.close_reason
            if round_id is not None and stage is not None:
                row_ = session.get(RoundRow, round_id)
                assert row_ is not None
                row_.stage = stage

    def request_counts(self, campaign: str) -> dict[str, int]:
        """Status -> number of requests of a campaign."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(ReviewRequestRow.status, func.count(ReviewRequestRow.id))
                .where(ReviewRequestRow.campaign == campaign)
                .group_by(ReviewRequestRow.status)
            ).tuples()
            return {s: int(n) for s, n in rows}

    # -- audit sets and model events ---------------------------------------------------------------------------

    def add_audit_buildings(
        self,
        campaign: str,
        purpose: str,
        building_ids: Iterable[str],
        round_id: int | None = None,
        detail: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> int:
        """Draw buildings into a campaign's audit set (``promotion``: held out of training; ``estimate``: a
        sample of model-settled buildings sent to volunteers); idempotent; returns how many were new."""
        rows = [
            {"campaign": campaign, "purpose": purpose, "building_id": b, "round_id": round_id, "added_at": _now(),
             "detail": dict((detail or {}).get(b, {}))}
            for b in dict.fromkeys(building_ids)
        ]  # fmt: skip
        with Session(self.engine) as session, session.begin():
            known = set(
                session.scalars(
                    select(AuditBuildingRow.building_id).where(
                        AuditBuildingRow.campaign == campaign, AuditBuildingRow.purpose == purpose
                    )
                )
            )
            fresh = [r for r in rows if r["building_id"] not in known]
            session.add_all(AuditBuildingRow(**r) for r in fresh)
            return len(fresh)

    def audit_buildings(self, campaign: str, purpose: str) -> dict[str, dict[str, Any]]:
        """Building id -> what was recorded when it joined the audit set."""
        with Session(self.engine) as session:
            rows = session.scalars(
                select(AuditBuildingRow).where(
                    AuditBuildingRow.campaign == campaign, AuditBuildingRow.purpose == purpose
                )
            ).all()
            return {r.building_id: dict(r.detail or {}) for r in rows}

    def record_model_event(
        self,
        campaign: str,
        kind: str,
        *,
        round_id: int | None,
        model_version: str | None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Log a model decision of a campaign (trained, promoted, kept, skipped) with its numbers."""
        with Session(self.engine) as session, session.begin():
            session.add(
                ModelEventRow(campaign=campaign, round_id=round_id, kind=kind, model_version=model_version,
                              detail=dict(detail or {}))
            )  # fmt: skip

    def model_events(self, campaign: str) -> list[ModelEvent]:
        """A campaign's model decisions, oldest first."""
        with Session(self.engine) as session:
            rows = session.scalars(
                select(ModelEventRow).where(ModelEventRow.campaign == campaign).order_by(ModelEventRow.id)
            ).all()
            return [
                ModelEvent(
                    r.id,
                    r.campaign,
                    r.round_id,
                    r.kind,
                    r.model_version,
                    dict(r.detail or {}),
                    _aware(r.created_at),
                )  # fmt: skip
                for r in rows
            ]

    # -- reads for the service ---------------------------------------------------------------------------------

    def building(self, building_id: str) -> tuple[int, dict[str, Any]] | None:
        """One building's number of dates and attributes, or None when the id is unknown."""
        with Session(self.engine) as session:
            row = session.get(BuildingRow, building_id)
            return None if row is None else (row.n_dates, dict(row.attributes or {}))

    def building_annotations(self, building_id: str) -> list[AnnotationRecord]:
        """Every annotation of one building in the order received, retracted ones included (and marked)."""
        with Session(self.engine) as session:
            rows = session.scalars(
                select(AnnotationRow)
                .where(AnnotationRow.building_id == building_id)
                .order_by(AnnotationRow.id)
            ).all()
            return [_annotation_record(r) for r in rows]

    def latest_posterior_records(self) -> dict[str, PosteriorRecord]:
        """The newest posterior of every building that has one, with its version and provenance."""
        with Session(self.engine) as session:
            newest = (
                select(PosteriorRow.building_id, func.max(PosteriorRow.version).label("v"))
                .group_by(PosteriorRow.building_id)
                .subquery()
            )
            rows = session.scalars(
                select(PosteriorRow).join(
                    newest,
                    (PosteriorRow.building_id == newest.c.building_id) & (PosteriorRow.version == newest.c.v),
                )
            ).all()
            return {r.building_id: _posterior_record(r) for r in rows}

    def latest_posterior_record(self, building_id: str) -> PosteriorRecord | None:
        """The newest posterior of one building with its version and provenance, or None."""
        with Session(self.engine) as session:
            row = session.scalars(
                select(PosteriorRow)
                .where(PosteriorRow.building_id == building_id)
                .order_by(PosteriorRow.version.desc())
                .limit(1)
            ).first()
            return None if row is None else _posterior_record(row)

    def round_status_counts(self) -> dict[int, dict[str, int]]:
        """Round id -> the campaign's buildings per status at the end of that round: each building counted with
        the latest status a round up to it decided (a round records only the decisions that changed, so its
        own rows are not the campaign's state; decisions outside rounds are left out)."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(DecisionRow.round_id, DecisionRow.building_id, DecisionRow.status)
                .where(DecisionRow.round_id.is_not(None))
                .order_by(DecisionRow.round_id, DecisionRow.id)
            ).tuples()
            current: dict[str, str] = {}
            out: dict[int, dict[str, int]] = {}
            for round_id, decided in groupby(rows, key=lambda row: cast(int, row[0])):
                current.update((str(building), str(status)) for _, building, status in decided)
                out[round_id] = dict(Counter(current.values()))
            return out

    def annotation_log(self) -> list[tuple[str, str, str, str, dt.datetime]]:
        """Every annotation not retracted as (building id, external id, volunteer id, source, received at)."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(
                    AnnotationRow.building_id,
                    AnnotationRow.external_id,
                    AnnotationRow.volunteer_id,
                    AnnotationRow.source,
                    AnnotationRow.received_at,
                )
                .where(AnnotationRow.retracted_at.is_(None))
                .order_by(AnnotationRow.id)
            ).tuples()
            return [(b, e, v, s, _aware(t)) for b, e, v, s, t in rows]

    def building_record(self, building_id: str) -> BuildingRecord | None:
        """Everything the store holds about one building, read on one connection; None when the id is unknown."""
        queries = self.__dict__.get("_record_queries")
        if queries is None:  # built once per store, with the id as a bound parameter (the service's hot path)
            b: Any = bindparam("building_id")
            buildings, posteriors = BuildingRow.__table__, PosteriorRow.__table__
            annotations, decisions = AnnotationRow.__table__, DecisionRow.__table__
            queries = (
                select(buildings).where(buildings.c.id == b),
                select(posteriors)
                .where(posteriors.c.building_id == b)
                .order_by(posteriors.c.version.desc())
                .limit(1),
                select(annotations).where(annotations.c.building_id == b).order_by(annotations.c.id),
                select(decisions).where(decisions.c.building_id == b).order_by(decisions.c.id),
            )
            self.__dict__["_record_queries"] = queries
        key = {"building_id": building_id}
        with self.engine.connect() as connection:
            row = connection.execute(queries[0], key).first()
            if row is None:
                return None
            posterior = connection.execute(queries[1], key).first()
            return BuildingRecord(
                building_id=row.id,
                n_dates=row.n_dates,
                attributes=dict(row.attributes or {}),
                posterior=_posterior_record(posterior) if posterior is not None else None,
                annotations=tuple(_annotation_record(a) for a in connection.execute(queries[2], key)),
                decisions=tuple(_stored_decision(d) for d in connection.execute(queries[3], key)),
            )

    def change_stamp(self) -> tuple[int, ...]:
        """A value that changes whenever buildings, annotations, posteriors, decisions or rounds change (read caches)."""
        query = self.__dict__.get("_stamp_query")
        if query is None:  # built once per store: constructing the statement costs more than running it
            query = select(
                select(func.coalesce(func.max(PosteriorRow.id), 0)).scalar_subquery(),
                select(func.coalesce(func.max(DecisionRow.id), 0)).scalar_subquery(),
                select(func.coalesce(func.max(AnnotationRow.id), 0)).scalar_subquery(),
                select(func.count(AnnotationRow.retracted_at)).scalar_subquery(),
                select(func.coalesce(func.max(AnnotationRevisionRow.id), 0)).scalar_subquery(),
                select(func.count(BuildingRow.id)).scalar_subquery(),
                select(func.coalesce(func.max(RoundRow.id), 0)).scalar_subquery(),
                select(func.count(RoundRow.finished_at)).scalar_subquery(),
            )
            self.__dict__["_stamp_query"] = query
        with self.engine.connect() as connection:
            return tuple(int(v) for v in connection.execute(query).one())

    # -- campaign lock (policy in active_learning.lock) --------------------------------------------------------

    def lock(self, campaign: str) -> LockRecord | None:
        """The current holder of a campaign's lock, or None."""
        with Session(self.engine) as session:
            row = session.get(CampaignLockRow, campaign)
            return None if row is None else _lock(row)

    def try_lock(self, campaign: str, holder: str, pid: int, host: str) -> bool:
        """Take a free lock atomically (insert-or-ignore of the lock row); False if someone holds it."""
        now = _now()
        with Session(self.engine) as session, session.begin():
            done = _insert_ignore(
                session,
                CampaignLockRow,
                [{"campaign": campaign, "holder": holder, "pid": pid, "host": host, "acquired_at": now,
                  "heartbeat_at": now}],
                "campaign",
            )  # fmt: skip
        return bool(done)

    def take_over_lock(self, campaign: str, stale: LockRecord, holder: str, pid: int, host: str) -> bool:
        """Replace a stale holder atomically (compare-and-swap on the holder token, unique per process run);
        False if someone else moved first."""
        now = _now()
        with Session(self.engine) as session, session.begin():
            result = session.execute(
                update(CampaignLockRow)
                .where(CampaignLockRow.campaign == campaign, CampaignLockRow.holder == stale.holder)
                .values(holder=holder, pid=pid, host=host, acquired_at=now, heartbeat_at=now)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def touch_lock(self, campaign: str, holder: str) -> bool:
        """Refresh the holder's heartbeat; False if the lock is no longer theirs."""
        with Session(self.engine) as session, session.begin():
            result = session.execute(
                update(CampaignLockRow)
                .where(CampaignLockRow.campaign == campaign, CampaignLockRow.holder == holder)
                .values(heartbeat_at=_now())
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def release_lock(self, campaign: str, holder: str | None = None) -> bool:
        """Release a lock (only the holder's unless ``holder`` is None: a forced unlock); True if one was held."""
        with Session(self.engine) as session, session.begin():
            stmt = delete(CampaignLockRow).where(CampaignLockRow.campaign == campaign)
            if holder is not None:
                stmt = stmt.where(CampaignLockRow.holder == holder)
            return bool(session.execute(stmt).rowcount)  # type: ignore[attr-defined]


def _quarantined_keys(session: Session, external_ids: Sequence[str]) -> set[tuple[str, str, str]]:
    """(external id, field, reason) of what is already in quarantine for these (non-empty) external ids."""
    ids = sorted({e for e in external_ids if e})
    out: set[tuple[str, str, str]] = set()
    for start in range(0, len(ids), _CHUNK):
        rows = session.execute(
            select(QuarantineRow.external_id, QuarantineRow.field, QuarantineRow.reason).where(
                QuarantineRow.external_id.in_(ids[start : start + _CHUNK])
            )
        ).tuples()
        out |= {(e, f, r) for e, f, r in rows}
    return out


def _archive(
    session: Session, external_id: str, revision: int, a: Annotation, digest: str, reason: str
) -> None:
    """Keep a content that was not applied, once per content (revisions are keyed on content)."""
    seen = session.scalars(
        select(AnnotationRevisionRow.id).where(
            AnnotationRevisionRow.external_id == external_id, AnnotationRevisionRow.content_hash == digest
        )
    ).first()
    if seen is None:
        session.add(
            AnnotationRevisionRow(external_id=external_id, revision=revision, states=[State(s).label for s in a.states],
                                  submitted_at=_stamp(a.submitted_at), content_hash=digest, reason=reason)
        )  # fmt: skip


def _archive_row(session: Session, row: AnnotationRow, reason: str) -> None:
    session.add(
        AnnotationRevisionRow(external_id=row.external_id, revision=row.revision, states=list(row.states),
                              submitted_at=row.submitted_at, content_hash=row.content_hash, reason=reason)
    )  # fmt: skip


def _trim(a: Annotation, n_dates: int) -> Annotation:
    """Cut the NOT_VISIBLE padding that table_to_annotations adds past the building's own dates."""
    if len(a.states) == n_dates:
        return a
    return Annotation(
        a.building_id, a.volunteer_id, a.source, a.states[:n_dates], a.submitted_at, a.external_id
    )


def _with_comment(a: Annotation, comment: str) -> Annotation:
    if a.comment == comment:
        return a
    return Annotation(
        a.building_id, a.volunteer_id, a.source, a.states, a.submitted_at, a.external_id, comment
    )


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _annotation(r: AnnotationRow) -> Annotation:
    return Annotation(
        building_id=r.building_id,
        volunteer_id=r.volunteer_id,
        source=r.source,  # type: ignore[arg-type]
        states=tuple(State.parse(s) for s in r.states),
        submitted_at=_aware(r.submitted_at),
        external_id=r.external_id,
        comment=r.comment or "",
    )


def _posterior(r: Any) -> Posterior:
    return Posterior(
        building_id=r.building_id,
        probs=tuple(r.probs),
        map_gap=r.map_gap,
        interval=(
            dt.date.fromisoformat(r.interval_start) if r.interval_start else None,
            dt.date.fromisoformat(r.interval_end) if r.interval_end else None,
        ),
        confidence=r.confidence,
        n_reviews=r.n_reviews,
        status=Status(r.status),
        model_version=r.model_version,
    )


def _stored_decision(r: Any) -> StoredDecision:
    reviews = tuple(
        ReviewInterval(
            str(x["external_id"]),
            str(x["volunteer_id"]),
            x.get("last_intact"),
            x.get("first_damaged"),
            bool(x.get("agrees")),
        )  # fmt: skip
        for x in (r.reviews or [])
    )
    decision = Decision(
        r.building_id, Status(r.status), r.reason, tuple(r.flags), r.map_gap, r.confidence, r.n_reviews,
        r.n_consistent, reviews,
    )  # fmt: skip
    return StoredDecision(decision, r.round_id, _aware(r.decided_at), r.model_version)


def _round(r: RoundRow) -> RoundRecord:
    return RoundRecord(
        id=r.id, kind=r.kind, campaign=r.campaign, stage=r.stage, params=dict(r.params or {}),
        summary=dict(r.summary or {}), model_version=r.model_version, note=r.note or "",
        started_at=_aware(r.started_at), finished_at=_aware(r.finished_at) if r.finished_at else None,
    )  # fmt: skip


def _campaign(r: CampaignRow) -> CampaignRecord:
    return CampaignRecord(
        r.name, r.mode, r.labeler, dict(r.config or {}), _aware(r.created_at), r.mlflow_run_id
    )


def _request(r: Any) -> RequestRecord:
    return RequestRecord(
        id=r.id, request_key=r.request_key, building_id=r.building_id, round_id=r.round_id, kind=r.kind,
        acquisition=r.acquisition, score=float(r.score), rank=int(r.rank), status=r.status, task_ref=r.task_ref,
        answer_external_id=r.answer_external_id, created_at=_aware(r.created_at),
        pushed_at=_aware(r.pushed_at) if r.pushed_at else None,
        closed_at=_aware(r.closed_at) if r.closed_at else None, close_reason=r.close_reason or "",
    )  # fmt: skip


def _lock(r: CampaignLockRow) -> LockRecord:
    return LockRecord(r.campaign, r.holder, int(r.pid), r.host, _aware(r.acquired_at), _aware(r.heartbeat_at))


@dataclass(frozen=True)
class AnnotationRecord:
    """A stored annotation with what the store knows about it (for evidence views).

    Attributes:
        annotation: the annotation as stored (its latest revision).
        received_at: when the store first received it.
        round_id: the round it belongs to, if any.
        revision: 1 for the original content, incremented by each update.
        retracted_at / retracted_reason: set when it was deleted at its source (it then leaves aggregation).
    """

    annotation: Annotation
    received_at: dt.datetime
    round_id: int | None
    revision: int
    retracted_at: dt.datetime | None
    retracted_reason: str | None


@dataclass(frozen=True)
class PosteriorRecord:
    """A stored posterior version with its provenance."""

    posterior: Posterior
    version: int
    aggregator: str
    round_id: int | None
    created_at: dt.datetime


@dataclass(frozen=True)
class BuildingRecord:
    """Everything stored about one building (:meth:`Store.building_record`).

    Attributes:
        building_id: the id.
        n_dates: its number of dates.
        attributes: what it was registered with.
        posterior: its latest posterior, or None.
        annotations: every annotation in the order received, retracted ones included.
        decisions: every decision, oldest first.
    """

    building_id: str
    n_dates: int
    attributes: dict[str, Any]
    posterior: PosteriorRecord | None
    annotations: tuple[AnnotationRecord, ...]
    decisions: tuple[StoredDecision, ...]


def _annotation_record(r: Any) -> AnnotationRecord:
    """From an ORM row or a Core row of the annotations table (same attribute names)."""
    return AnnotationRecord(
        annotation=Annotation(
            building_id=r.building_id,
            volunteer_id=r.volunteer_id,
            source=r.source,
            states=tuple(State.parse(s) for s in r.states),
            submitted_at=_aware(r.submitted_at),
            external_id=r.external_id,
            comment=r.comment or "",
        ),
        received_at=_aware(r.received_at),
        round_id=r.round_id,
        revision=r.revision,
        retracted_at=_aware(r.retracted_at) if r.retracted_at else None,
        retracted_reason=r.retracted_reason,
    )


def _posterior_record(r: Any) -> PosteriorRecord:
    """From an ORM row or a Core row of the posteriors table."""
    return PosteriorRecord(_posterior(r), r.version, r.aggregator, r.round_id, _aware(r.created_at))
