"""The annotation schema: per-date states reported by witnesses about one building.

An :class:`Annotation` is one review of one building's whole timeline. For aggregation it is flattened into
one long table with the columns named below (one row per building, volunteer, date): :func:`annotations_to_table`
builds it, :func:`validate_table` checks it at the door and returns the clean rows plus one :class:`Reject`
(record, field, value seen, reason) per refused annotation, so nothing is silently dropped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

import numpy as np
import pandas as pd

from active_learning.errors import AnnotationTableError

__all__ = [
    "COLUMNS",
    "COL_BUILDING",
    "COL_DATE_INDEX",
    "COL_EXTERNAL_ID",
    "COL_SOURCE",
    "COL_STATE",
    "COL_SUBMITTED",
    "COL_VOLUNTEER",
    "SOURCES",
    "Annotation",
    "Reject",
    "Source",
    "State",
    "ValidatedTable",
    "annotations_to_table",
    "table_to_annotations",
    "validate_table",
]


class State(IntEnum):
    """What a witness saw at one date. ``NOT_VISIBLE`` (cloud, nodata) carries no evidence."""

    INTACT = 0
    DAMAGED = 1
    DESTROYED = 2
    NOT_VISIBLE = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str | int) -> State:
        """Parse ``"intact"``/``"damaged"``/``"destroyed"``/``"not_visible"`` or the integer code."""
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[str(value).strip().upper().replace(" ", "_")]
        except KeyError:
            raise ValueError(f"unknown state {value!r}; expected one of {[s.label for s in cls]}") from None


Source = Literal["labelstudio", "simulated", "expert"]
SOURCES: tuple[str, ...] = ("labelstudio", "simulated", "expert")

COL_BUILDING = "building_id"
COL_VOLUNTEER = "volunteer_id"
COL_SOURCE = "source"
COL_DATE_INDEX = "date_index"
COL_STATE = "state"
COL_SUBMITTED = "submitted_at"
COL_EXTERNAL_ID = "external_id"
COLUMNS = (COL_BUILDING, COL_VOLUNTEER, COL_SOURCE, COL_DATE_INDEX, COL_STATE, COL_SUBMITTED, COL_EXTERNAL_ID)


@dataclass(frozen=True)
class Annotation:
    """One witness's review of one building's timeline.

    Attributes:
        building_id: the Building's id.
        volunteer_id: pseudonymous id (never an email or Label Studio user name).
        source: ``labelstudio``, ``simulated`` or ``expert``.
        states: one State per timeline date, in date order.
        submitted_at: when the review was submitted (UTC).
        external_id: idempotency key, e.g. ``"ls:1234"`` for Label Studio annotation 1234.
        comment: the volunteer's free-text comment (kept as evidence; empty when none). It is not part of the
            long table: aggregation reads states only.
    """

    building_id: str
    volunteer_id: str
    source: Source
    states: tuple[State, ...]
    submitted_at: dt.datetime
    external_id: str
    comment: str = ""


@dataclass(frozen=True)
class Reject:
    """One annotation refused at the door, kept so that nothing received is lost.

    Attributes:
        external_id: the annotation's idempotency key (``""`` when it had none).
        building_id: the building it was about, as received.
        field: the column that was wrong.
        value: the offending value, as text.
        reason: what is wrong and how to fix it.
    """

    external_id: str
    building_id: str
    field: str
    value: str
    reason: str

    def __str__(self) -> str:
        return f"annotation {self.external_id!r} (building {self.building_id!r}): {self.field}={self.value!r}: {self.reason}"


@dataclass(frozen=True)
class ValidatedTable:
    """The outcome of :func:`validate_table`.

    Attributes:
        table: the clean long table, canonical dtypes (``state`` as the integer State code).
        rejects: every refused annotation with its reason; its rows are absent from ``table``.
    """

    table: pd.DataFrame
    rejects: tuple[Reject, ...]


_STATE_LOOKUP: dict[object, int] = {}
for _s in State:
    _STATE_LOOKUP.update({_s.label: int(_s), _s.name: int(_s), int(_s): int(_s), str(int(_s)): int(_s)})
_STATE_LOOKUP["not visible"] = int(State.NOT_VISIBLE)


def annotations_to_table(annotations: Iterable[Annotation]) -> pd.DataFrame:
    """Flatten annotations into the long table, one row per (annotation, date); nothing is validated here.

    Args:
        annotations: reviews; each one's ``states`` is in date order starting at date index 0.

    Returns:
        A DataFrame with exactly the columns :data:`COLUMNS`.
    """
    rows: dict[str, list[object]] = {c: [] for c in COLUMNS}
    for a in annotations:
        n = len(a.states)
        rows[COL_BUILDING].extend([a.building_id] * n)
        rows[COL_VOLUNTEER].extend([a.volunteer_id] * n)
        rows[COL_SOURCE].extend([a.source] * n)
        rows[COL_DATE_INDEX].extend(range(n))
        rows[COL_STATE].extend(int(s) if isinstance(s, State) else s for s in a.states)
        rows[COL_SUBMITTED].extend([a.submitted_at] * n)
        rows[COL_EXTERNAL_ID].extend([a.external_id] * n)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def table_to_annotations(table: pd.DataFrame, n_dates: int) -> list[Annotation]:
    """Rebuild annotations from a validated long table; dates without a row become ``NOT_VISIBLE``."""
    out: list[Annotation] = []
    for ext, group in table.groupby(COL_EXTERNAL_ID, sort=False):
        states = [State.NOT_VISIBLE] * n_dates
        for t, s in zip(group[COL_DATE_INDEX].to_numpy(), group[COL_STATE].to_numpy(), strict=True):
            states[int(t)] = State(int(s))
        first = group.iloc[0]
        out.append(
            Annotation(
                building_id=str(first[COL_BUILDING]),
                volunteer_id=str(first[COL_VOLUNTEER]),
                source=first[COL_SOURCE],
                states=tuple(states),
                submitted_at=pd.Timestamp(first[COL_SUBMITTED]).to_pydatetime(),
                external_id=str(ext),
            )
        )
    return out


def validate_table(
    table: pd.DataFrame,
    *,
    building_ids: Iterable[str] | None = None,
    n_dates: int | None = None,
    strict: bool = False,
) -> ValidatedTable:
    """Validate the long annotation table at the door.

    Each annotation (all rows sharing an external id) is accepted or refused as a whole; the input is never
    modified. Refused: unknown building ids, date indices that are not integers in ``0..n_dates - 1``, unknown
    states or sources, empty volunteer or external ids, unparseable submission times, an external id reused for
    different content (another building, volunteer or source, or two states for one date), and gold labels
    that contradict themselves (an ``expert`` review that sees damage before intact) or each other (expert
    reviews of one building admitting no common gap). Exact duplicate rows are dropped silently (idempotent).

    Args:
        table: the long table with columns :data:`COLUMNS`.
        building_ids: the known buildings; ``None`` accepts any id.
        n_dates: the timeline length; ``None`` only checks that date indices are non-negative.
        strict: raise instead of returning rejects.

    Returns:
        The clean table and the rejects.

    Raises:
        AnnotationTableError: columns are missing, or ``strict`` and something was refused.
    """
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise AnnotationTableError(
            f"annotation table lacks columns {missing}; it has {list(table.columns)}. "
            f"Build it with active_learning.schema.annotations_to_table."
        )
    df = table.loc[:, list(COLUMNS)].reset_index(drop=True)  # a copy: the input is never modified
    df[COL_EXTERNAL_ID] = df[COL_EXTERNAL_ID].fillna("").astype(str)
    df[COL_BUILDING] = df[COL_BUILDING].fillna("").astype(str)
    df[COL_VOLUNTEER] = df[COL_VOLUNTEER].fillna("").astype(str)
    df[COL_SOURCE] = df[COL_SOURCE].fillna("").astype(str)
    rejected: dict[str, Reject] = {}

    def refuse(mask: np.ndarray | pd.Series, field: str, values: pd.Series, reason: str) -> None:
        idx = np.flatnonzero(np.asarray(mask, dtype=bool))
        for i in idx:
            ext = df[COL_EXTERNAL_ID].iat[i]
            if ext not in rejected:
                rejected[ext] = Reject(ext, df[COL_BUILDING].iat[i], field, str(values.iat[i]), reason)

    refuse(
        df[COL_EXTERNAL_ID].str.strip() == "",
        COL_EXTERNAL_ID,
        df[COL_EXTERNAL_ID],
        "every annotation needs an external id (the idempotency key, e.g. 'ls:1234')",
    )
    refuse(
        df[COL_VOLUNTEER].str.strip() == "",
        COL_VOLUNTEER,
        df[COL_VOLUNTEER],
        "every annotation needs a pseudonymous volunteer id",
    )
    refuse(
        ~df[COL_SOURCE].isin(SOURCES),
        COL_SOURCE,
        df[COL_SOURCE],
        f"unknown source; expected one of {list(SOURCES)}",
    )
    if building_ids is not None:
        # a set lookup per row, not Series.isin: pandas' string isin converts every known id on each call
        # (about 1 s for a city's 26,000 buildings), and the service validates each webhook's annotation alone
        known = set(building_ids)
        refuse(
            ~np.fromiter((b in known for b in df[COL_BUILDING]), dtype=bool, count=len(df)),
            COL_BUILDING,
            df[COL_BUILDING],
            "unknown building id; add the building first or fix the id",
        )

    raw_t = df[COL_DATE_INDEX]
    t_num = pd.to_numeric(raw_t, errors="coerce")
    t_ok = t_num.notna() & (t_num == np.floor(t_num.fillna(0))) & (t_num >= 0)
    if n_dates is not None:
        t_ok &= t_num < n_dates
    span = f"0..{n_dates - 1}" if n_dates is not None else ">= 0"
    refuse(~t_ok, COL_DATE_INDEX, raw_t, f"date index must be an integer in {span}")

    raw_s = df[COL_STATE]
    if pd.api.types.is_integer_dtype(raw_s):
        codes = raw_s.where(raw_s.isin(list(range(len(State)))))
    else:
        codes = raw_s.map(lambda v: _STATE_LOOKUP.get(v.strip().lower() if isinstance(v, str) else v))
    refuse(codes.isna(), COL_STATE, raw_s, f"unknown state; expected one of {[s.label for s in State]}")

    when = pd.to_datetime(df[COL_SUBMITTED], errors="coerce", utc=True)
    refuse(when.isna(), COL_SUBMITTED, df[COL_SUBMITTED], "submission time must be an ISO date-time")

    df[COL_DATE_INDEX] = t_num.where(t_ok, -1).astype(np.int64)
    df[COL_STATE] = codes.fillna(-1).astype(np.int8)
    df[COL_SUBMITTED] = when

    # One external id, one annotation: same building, volunteer, source, one state per date.
    keyed = df[~df[COL_EXTERNAL_ID].isin(list(rejected))]
    grouped = keyed.groupby(COL_EXTERNAL_ID, sort=False)
    for col in (COL_BUILDING, COL_VOLUNTEER, COL_SOURCE):
        clash = grouped[col].transform("nunique") > 1
        refuse(
            df.index.isin(keyed.index[clash.to_numpy()]),
            COL_EXTERNAL_ID,
            df[COL_EXTERNAL_ID],
            f"duplicate external id with different {col}; give each annotation its own external id",
        )
    dupes = keyed.drop_duplicates(subset=[COL_EXTERNAL_ID, COL_DATE_INDEX, COL_STATE])
    two_states = dupes.duplicated(subset=[COL_EXTERNAL_ID, COL_DATE_INDEX], keep=False)
    refuse(
        df.index.isin(dupes.index[two_states.to_numpy()]),
        COL_EXTERNAL_ID,
        df[COL_EXTERNAL_ID],
        "duplicate external id with two different states for one date; give each annotation its own external id",
    )

    _check_gold(df, rejected)

    clean = df[~df[COL_EXTERNAL_ID].isin(list(rejected))]
    clean = clean.drop_duplicates(subset=[COL_EXTERNAL_ID, COL_DATE_INDEX]).reset_index(drop=True)
    rejects = tuple(rejected.values())
    if strict and rejects:
        shown = "; ".join(str(r) for r in rejects[:5])
        more = f" (and {len(rejects) - 5} more)" if len(rejects) > 5 else ""
        raise AnnotationTableError(f"{len(rejects)} annotations refused: {shown}{more}", rejects)
    return ValidatedTable(table=clean, rejects=rejects)


def _check_gold(df: pd.DataFrame, rejected: dict[str, Reject]) -> None:
    """Refuse expert annotations that are not monotone, and expert annotations of one building that disagree."""
    gold = df[(df[COL_SOURCE] == "expert") & ~df[COL_EXTERNAL_ID].isin(list(rejected))]
    if gold.empty:
        return
    seen = gold[gold[COL_STATE] != int(State.NOT_VISIBLE)]
    damaged = seen[COL_STATE] != int(State.INTACT)
    # Consistent gaps of one review: (last intact date + 1) <= g <= first damaged date.
    lo = seen[~damaged].groupby(COL_EXTERNAL_ID)[COL_DATE_INDEX].max() + 1
    hi = seen[damaged].groupby(COL_EXTERNAL_ID)[COL_DATE_INDEX].min()
    bounds = pd.DataFrame({"lo": lo, "hi": hi})
    bounds["lo"] = bounds["lo"].fillna(0)
    bounds["hi"] = bounds["hi"].fillna(np.iinfo(np.int32).max)
    building = gold.groupby(COL_EXTERNAL_ID)[COL_BUILDING].first()
    bounds["building"] = building.reindex(bounds.index)
    for ext, row in bounds[bounds["lo"] > bounds["hi"]].iterrows():
        rejected.setdefault(
            str(ext),
            Reject(
                str(ext),
                str(row["building"]),
                COL_STATE,
                f"intact at date {int(row['lo']) - 1} after damage at {int(row['hi'])}",
                "gold label contradicts itself (damage before intact); the expert must re-review the building",
            ),
        )
    ok = bounds[bounds["lo"] <= bounds["hi"]]
    per_building = ok.groupby("building").agg(lo=("lo", "max"), hi=("hi", "min"))
    for b in per_building.index[per_building["lo"] > per_building["hi"]]:
        for ext in ok.index[ok["building"] == b]:
            rejected.setdefault(
                str(ext),
                Reject(
                    str(ext),
                    str(b),
                    COL_STATE,
                    f"gold labels of {b!r} admit no common gap",
                    "expert reviews of this building contradict each other; resolve them and resubmit one",
                ),
            )
