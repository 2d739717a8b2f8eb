"""The store of record (SQLAlchemy 2.0): buildings, annotations, quarantine, posteriors, decisions, rounds.

SQLite by default, PostgreSQL (or anything SQLAlchemy speaks) by URL. The schema is owned by the Alembic
migrations in ``active_learning/migrations``; :func:`upgrade_to_head` applies them from code, no CLI or ini
file needed, and :meth:`Store.open` always does so first.

Annotations are idempotent on their external id: the same annotation received twice is stored once; an
external id that comes back with different content, and every annotation refused at the door (unknown
building, date out of range, unknown state, self-contradicting gold, ...), is kept in the quarantine table
with its full payload and the reason, so nothing received is lost. Posteriors are versioned per building;
decisions and rounds are stored with their reasons and parameters so that every status can be explained.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    create_engine,
    func,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from active_learning.errors import MigrationError, StoreError
from active_learning.posterior import Posterior, Status
from active_learning.retirement import Decision
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
    "DecisionRecord",
    "IngestReport",
    "PosteriorRecord",
    "QuarantineRecord",
    "RoundRecord",
    "Store",
    "alembic_config",
    "upgrade_to_head",
]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


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


class AnnotationRevisionRow(Base):
    """An earlier content of an annotation, kept when an update superseded it."""

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


@dataclass(frozen=True)
class IngestReport:
    """What :meth:`Store.add_annotations` did.

    Attributes:
        inserted: external ids stored now.
        unchanged: external ids already stored with the same content (idempotent repeats).
        quarantined: refused annotations with their reasons (stored in the quarantine table).
        updated: external ids whose stored content an update superseded (``allow_updates``).
    """

    inserted: tuple[str, ...]
    unchanged: tuple[str, ...]
    quarantined: tuple[Reject, ...]
    updated: tuple[str, ...] = ()


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
        with engine.begin() as connection:
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
        return create_engine(url)
    except (ArgumentError, ModuleNotFoundError) as exc:
        raise StoreError(
            f"bad store URL {url!r} ({exc}); use e.g. sqlite:///path.db or postgresql://..."
        ) from None


def _content_hash(a: Annotation) -> str:
    body = json.dumps(
        [a.building_id, a.volunteer_id, a.source, [State(s).label for s in a.states], _iso(a.submitted_at)]
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _iso(when: dt.datetime) -> str:
    ts = pd.Timestamp(when)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.isoformat()


def _payload(a: Annotation) -> dict[str, Any]:
    return {
        "building_id": a.building_id,
        "volunteer_id": a.volunteer_id,
        "source": a.source,
        "states": [s.label if isinstance(s, State) else str(s) for s in a.states],
        "submitted_at": str(a.submitted_at),
        "external_id": a.external_id,
    }


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

    # -- buildings ---------------------------------------------------------------------------------------------

    def add_buildings(
        self, building_ids: Iterable[str], n_dates: int, attributes: dict[str, Any] | None = None
    ) -> int:
        """Register buildings (already known ids are left as they are); returns how many were new."""
        ids = list(dict.fromkeys(str(b) for b in building_ids))
        with Session(self.engine) as session, session.begin():
            known = set(session.scalars(select(BuildingRow.id)))
            new = [b for b in ids if b not in known]
            session.add_all(BuildingRow(id=b, n_dates=n_dates, attributes=attributes or {}) for b in new)
        return len(new)

    def building_attributes(self) -> dict[str, dict[str, Any]]:
        """Building id -> the attributes it was registered with."""
        with Session(self.engine) as session:
            rows = session.execute(select(BuildingRow.id, BuildingRow.attributes)).tuples().all()
            return {str(b): dict(a or {}) for b, a in rows}

    def building_dates(self) -> dict[str, int]:
        """Building id -> its number of dates."""
        with Session(self.engine) as session:
            return dict(session.execute(select(BuildingRow.id, BuildingRow.n_dates)).tuples().all())

    # -- annotations -------------------------------------------------------------------------------------------

    def add_annotations(
        self, annotations: Sequence[Annotation], round_id: int | None = None, *, allow_updates: bool = False
    ) -> IngestReport:
        """Store annotations idempotently; refuse bad ones into the quarantine with their reasons.

        Args:
            annotations: the annotations received.
            round_id: the round they belong to, if any.
            allow_updates: an external id that comes back with different content from the same volunteer and a
                submission time not older than the stored one is an *update* (a volunteer edited the review in
                Label Studio): the stored content moves to ``annotation_revisions`` and the new one replaces it.
                Without it (or when volunteer or time disagree) it is quarantined as a conflicting duplicate.
        """
        n_dates = self.building_dates()
        by_ext: dict[str, list[Annotation]] = {}
        for a in annotations:
            by_ext.setdefault(str(a.external_id), []).append(a)
        rejects: list[Reject] = []
        sized = []
        for a in annotations:
            want = n_dates.get(a.building_id)
            if want is not None and len(a.states) != want:
                rejects.append(
                    Reject(
                        a.external_id,
                        a.building_id,
                        "states",
                        f"{len(a.states)} dates",
                        f"building has {want} dates; send one state per date",
                    )  # fmt: skip
                )
            else:
                sized.append(a)
        sized = [a for a in sized if a.external_id not in {r.external_id for r in rejects}]
        checked = validate_table(
            annotations_to_table(sized), building_ids=n_dates, n_dates=max(n_dates.values(), default=None)
        )
        rejects.extend(checked.rejects)
        clean = (
            table_to_annotations(checked.table, max(n_dates.values(), default=0))
            if len(checked.table)
            else []
        )

        inserted: list[str] = []
        unchanged: list[str] = []
        updated: list[str] = []
        with Session(self.engine) as session, session.begin():
            stored: dict[str, str] = {}
            ext_ids = [a.external_id for a in clean]
            for start in range(0, len(ext_ids), 500):
                chunk = ext_ids[start : start + 500]
                rows = session.execute(
                    select(AnnotationRow.external_id, AnnotationRow.content_hash).where(
                        AnnotationRow.external_id.in_(chunk)
                    )
                )
                stored.update(dict(rows.tuples().all()))
            for a in clean:
                a = _trim(a, n_dates[a.building_id])
                digest = _content_hash(a)
                if a.external_id not in stored:
                    session.add(
                        AnnotationRow(
                            external_id=a.external_id, building_id=a.building_id, volunteer_id=a.volunteer_id,
                            source=a.source, states=[State(s).label for s in a.states],
                            submitted_at=pd.Timestamp(_iso(a.submitted_at)).to_pydatetime(),
                            content_hash=digest, round_id=round_id,
                        )
                    )  # fmt: skip
                    stored[a.external_id] = digest
                    inserted.append(a.external_id)
                elif stored[a.external_id] == digest:
                    unchanged.append(a.external_id)
                elif allow_updates and self._supersede(session, a, digest):
                    stored[a.external_id] = digest
                    updated.append(a.external_id)
                else:
                    rejects.append(
                        Reject(
                            a.external_id,
                            a.building_id,
                            COL_EXTERNAL_ID,
                            a.external_id,
                            "duplicate external id with different content; the stored annotation is kept",
                        )  # fmt: skip
                    )
            for r in rejects:
                for a in by_ext.get(r.external_id, []) or [None]:  # type: ignore[list-item]
                    session.add(
                        QuarantineRow(
                            external_id=r.external_id, building_id=r.building_id, field=r.field, value=r.value,
                            reason=r.reason, payload=_payload(a) if a is not None else {},
                        )
                    )  # fmt: skip
        return IngestReport(tuple(inserted), tuple(unchanged), tuple(rejects), tuple(updated))

    @staticmethod
    def _supersede(session: Session, a: Annotation, digest: str) -> bool:
        """Replace the stored content of ``a.external_id`` by ``a``, archiving the old one; False if refused."""
        row = session.scalars(select(AnnotationRow).where(AnnotationRow.external_id == a.external_id)).one()
        if row.volunteer_id != a.volunteer_id or row.building_id != a.building_id:
            return False
        if pd.Timestamp(_iso(a.submitted_at)) < pd.Timestamp(_iso(_aware(row.submitted_at))):
            return False
        session.add(
            AnnotationRevisionRow(
                external_id=row.external_id, revision=row.revision, states=list(row.states),
                submitted_at=row.submitted_at, content_hash=row.content_hash,
                reason="superseded by an update of the same annotation",
            )
        )  # fmt: skip
        row.states = [State(s).label for s in a.states]
        row.submitted_at = pd.Timestamp(_iso(a.submitted_at)).to_pydatetime()
        row.content_hash = digest
        row.revision += 1
        row.retracted_at = None
        row.retracted_reason = None
        return True

    def retract(self, external_ids: Iterable[str], reason: str) -> list[str]:
        """Mark annotations as retracted (deleted at their source); they stay stored but leave aggregation.

        Returns:
            The external ids retracted now (unknown or already retracted ids are skipped).
        """
        ids = list(dict.fromkeys(external_ids))
        done: list[str] = []
        with Session(self.engine) as session, session.begin():
            for start in range(0, len(ids), 500):
                rows = session.scalars(
                    select(AnnotationRow).where(
                        AnnotationRow.external_id.in_(ids[start : start + 500]),
                        AnnotationRow.retracted_at.is_(None),
                    )
                ).all()
                for row in rows:
                    row.retracted_at = _now()
                    row.retracted_reason = reason
                    done.append(row.external_id)
        return done

    def revisions(self, external_id: str) -> list[tuple[int, tuple[State, ...], dt.datetime, str]]:
        """Earlier contents of one annotation: (revision, states, submitted_at, reason), oldest first."""
        with Session(self.engine) as session:
            rows = session.scalars(
                select(AnnotationRevisionRow)
                .where(AnnotationRevisionRow.external_id == external_id)
                .order_by(AnnotationRevisionRow.revision)
            ).all()
            return [
                (r.revision, tuple(State.parse(x) for x in r.states), _aware(r.submitted_at), r.reason)
                for r in rows
            ]

    def annotations(self, include_retracted: bool = False) -> list[Annotation]:
        """Every stored annotation in the order received; retracted ones only when asked."""
        with Session(self.engine) as session:
            query = select(AnnotationRow).order_by(AnnotationRow.id)
            if not include_retracted:
                query = query.where(AnnotationRow.retracted_at.is_(None))
            rows = session.scalars(query).all()
            return [
                Annotation(
                    building_id=r.building_id,
                    volunteer_id=r.volunteer_id,
                    source=r.source,  # type: ignore[arg-type]
                    states=tuple(State.parse(s) for s in r.states),
                    submitted_at=_aware(r.submitted_at),
                    external_id=r.external_id,
                )  # fmt: skip
                for r in rows
            ]

    def annotations_table(self) -> pd.DataFrame:
        """Every stored annotation as the validated long table."""
        return validate_table(annotations_to_table(self.annotations())).table

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

    # -- rounds ------------------------------------------------------------------------------------------------

    def start_round(self, kind: str, params: dict[str, Any] | None = None) -> int:
        """Open a round (acquisition, aggregation, retirement, ...) and return its id."""
        with Session(self.engine) as session, session.begin():
            row = RoundRow(kind=kind, params=params or {})
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

    # -- posteriors and decisions ------------------------------------------------------------------------------

    def save_posteriors(
        self, posteriors: Sequence[Posterior], *, aggregator: str = "", round_id: int | None = None
    ) -> dict[str, int]:
        """Store a new version of each building's posterior; returns building id -> version written."""
        self._require_buildings(p.building_id for p in posteriors)
        with Session(self.engine) as session, session.begin():
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
            for p in posteriors:
                version = int(latest.get(p.building_id) or 0) + 1
                latest[p.building_id] = version
                versions[p.building_id] = version
                lo, hi = p.interval
                session.add(
                    PosteriorRow(
                        building_id=p.building_id, version=version, probs=[float(x) for x in p.probs],
                        map_gap=int(p.map_gap), interval_start=lo.isoformat() if lo else None,
                        interval_end=hi.isoformat() if hi else None, confidence=float(p.confidence),
                        n_reviews=int(p.n_reviews), status=str(p.status), model_version=p.model_version,
                        aggregator=aggregator, round_id=round_id,
                    )
                )  # fmt: skip
        return versions

    def latest_posteriors(self) -> dict[str, Posterior]:
        """The newest posterior of every building that has one."""
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

    def record_decisions(self, decisions: Sequence[Decision], round_id: int | None = None) -> None:
        """Store retirement decisions with their reasons and flags."""
        self._require_buildings(d.building_id for d in decisions)
        with Session(self.engine) as session, session.begin():
            session.add_all(
                DecisionRow(
                    building_id=d.building_id,
                    status=str(d.status),
                    reason=d.reason,
                    flags=list(d.flags),
                    map_gap=d.map_gap,
                    confidence=d.confidence,
                    n_reviews=d.n_reviews,
                    n_consistent=d.n_consistent,
                    round_id=round_id,
                )  # fmt: skip
                for d in decisions
            )

    def decisions(self, building_id: str | None = None) -> list[Decision]:
        """Stored decisions, oldest first, optionally for one building."""
        with Session(self.engine) as session:
            query = select(DecisionRow).order_by(DecisionRow.id)
            if building_id is not None:
                query = query.where(DecisionRow.building_id == building_id)
            return [
                Decision(
                    r.building_id,
                    Status(r.status),
                    r.reason,
                    tuple(r.flags),
                    r.map_gap,
                    r.confidence,
                    r.n_reviews,
                    r.n_consistent,
                )  # fmt: skip
                for r in session.scalars(query).all()
            ]

    def _require_buildings(self, ids: Iterable[str]) -> None:
        known = self.building_dates()
        missing = sorted({b for b in ids if b not in known})
        if missing:
            raise StoreError(f"unknown buildings {missing[:5]} ({len(missing)} in all); add_buildings first")

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

    def latest_decision_records(self) -> dict[str, DecisionRecord]:
        """The newest decision of every building that has one (status, reason, flags, round, time)."""
        with Session(self.engine) as session:
            newest = select(func.max(DecisionRow.id).label("id")).group_by(DecisionRow.building_id).subquery()
            rows = session.scalars(select(DecisionRow).where(DecisionRow.id.in_(select(newest.c.id)))).all()
            return {r.building_id: _decision_record(r) for r in rows}

    def decision_records(self, building_id: str) -> list[DecisionRecord]:
        """Every decision about one building, oldest first, with its round and time."""
        with Session(self.engine) as session:
            rows = session.scalars(
                select(DecisionRow).where(DecisionRow.building_id == building_id).order_by(DecisionRow.id)
            ).all()
            return [_decision_record(r) for r in rows]

    def rounds(self) -> list[RoundRecord]:
        """Every round, oldest first."""
        with Session(self.engine) as session:
            rows = session.scalars(select(RoundRow).order_by(RoundRow.id)).all()
            return [
                RoundRecord(
                    r.id,
                    r.kind,
                    dict(r.params or {}),
                    r.note,
                    _aware(r.started_at),
                    _aware(r.finished_at) if r.finished_at else None,
                )  # fmt: skip
                for r in rows
            ]

    def round_decision_counts(self) -> dict[int, dict[str, int]]:
        """Round id -> decisions it recorded per status (decisions outside rounds are left out)."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(DecisionRow.round_id, DecisionRow.status, func.count(DecisionRow.id))
                .where(DecisionRow.round_id.is_not(None))
                .group_by(DecisionRow.round_id, DecisionRow.status)
            ).tuples()
            out: dict[int, dict[str, int]] = {}
            for round_id, status, n in rows:
                if round_id is not None:
                    out.setdefault(int(round_id), {})[str(status)] = int(n)
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
                decisions=tuple(_decision_record(d) for d in connection.execute(queries[3], key)),
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


def _trim(a: Annotation, n_dates: int) -> Annotation:
    """Cut the NOT_VISIBLE padding that table_to_annotations adds past the building's own dates."""
    if len(a.states) == n_dates:
        return a
    return Annotation(
        a.building_id, a.volunteer_id, a.source, a.states[:n_dates], a.submitted_at, a.external_id
    )


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _posterior(r: PosteriorRow) -> Posterior:
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
class DecisionRecord:
    """A stored retirement decision with its round and time."""

    decision: Decision
    round_id: int | None
    decided_at: dt.datetime


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
    decisions: tuple[DecisionRecord, ...]


@dataclass(frozen=True)
class RoundRecord:
    """A stored round: its kind, parameters, note and times."""

    id: int
    kind: str
    params: dict[str, Any]
    note: str
    started_at: dt.datetime
    finished_at: dt.datetime | None


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


def _decision_record(r: Any) -> DecisionRecord:
    """From an ORM row or a Core row of the decisions table."""
    decision = Decision(
        r.building_id, Status(r.status), r.reason, tuple(r.flags), r.map_gap, r.confidence, r.n_reviews,
        r.n_consistent,
    )  # fmt: skip
    return DecisionRecord(decision, r.round_id, _aware(r.decided_at))
