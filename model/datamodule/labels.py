"""The gap-label table: :class:`GapLabels`, its CSV format, and audit gaps for evaluation.

Labels enter as a table, never as volunteer answers: each labelled building carries either a *soft target*
(probabilities over gaps 0..T, e.g. an aggregated crowd posterior) or an *interval* (last date seen intact,
first date seen damaged; the loss marginalises over the gaps it allows), and optionally the final grade.
On disk the table is a CSV with ``building_id`` and either ``last_intact``/``first_damaged`` (ISO dates of the
chip cache's timeline, empty for "never seen") or ``p_gap_0 .. p_gap_T`` columns, plus an optional ``grade``
(``damaged``/``destroyed``) and ``block_id``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model.changepoint import interval_gap_mask
from model.datamodule.arrays import ChipArrays
from model.errors import DataMismatchError, LabelError

__all__ = ["GRADES", "GapLabels", "read_audit_gaps"]

GRADES = ("damaged", "destroyed")
BUILDING_ID = "building_id"
LAST_INTACT = "last_intact"
FIRST_DAMAGED = "first_damaged"
GRADE = "grade"
BLOCK_ID = "block_id"
SOFT_PREFIX = "p_gap_"


@dataclass(frozen=True)
class GapLabels:
    """Training targets over destruction gaps for a set of buildings.

    Attributes:
        building_ids: labelled buildings.
        target: float32 ``[N, T + 1]``: soft target probabilities, or for interval rows the 0/1 mask of the
            allowed gaps.
        interval: bool ``[N]``: True where the row is an interval (its target is a 0/1 mask, not a posterior).
        grade: int64 ``[N]``: 0 damaged, 1 destroyed, -1 unknown or not damaged.
        block_ids: optional spatial block of each building.
        snapshot_id: content hash identifying this label set in MLflow runs.
    """

    building_ids: tuple[str, ...]
    target: np.ndarray = field(repr=False)
    interval: np.ndarray = field(repr=False)
    grade: np.ndarray = field(repr=False)
    block_ids: tuple[str, ...] | None = field(default=None, repr=False)
    snapshot_id: str = ""

    def __post_init__(self) -> None:
        n = len(self.building_ids)
        if n == 0:
            raise LabelError(
                "the label set is empty; label some buildings (or lower the filters) before training"
            )
        if self.target.ndim != 2 or self.target.shape[0] != n:
            raise LabelError(f"target shape {self.target.shape} does not match {n} buildings")
        if len(set(self.building_ids)) != n:
            dup = pd.Series(self.building_ids)
            raise LabelError(
                f"duplicate building ids in the labels: {sorted(set(dup[dup.duplicated()]))[:10]}"
            )
        empty = np.flatnonzero(self.target.sum(axis=1) <= 0)
        if len(empty):
            raise LabelError(
                f"{len(empty)} label row(s) allow no gap at all (ids {[self.building_ids[i] for i in empty[:10]]}); "
                "last_intact must come before first_damaged"
            )
        if not self.snapshot_id:
            digest = hashlib.sha256()
            digest.update("\n".join(self.building_ids).encode())
            digest.update(np.ascontiguousarray(self.target, dtype=np.float32).tobytes())
            digest.update(np.ascontiguousarray(self.grade, dtype=np.int64).tobytes())
            object.__setattr__(self, "snapshot_id", digest.hexdigest()[:16])

    @property
    def n_gaps(self) -> int:
        return int(self.target.shape[1])

    @classmethod
    def from_intervals(
        cls,
        building_ids: Sequence[str],
        last_intact: Sequence[int | None],
        first_damaged: Sequence[int | None],
        n_dates: int,
        grade: Sequence[int] | np.ndarray | None = None,
        block_ids: Sequence[str] | None = None,
    ) -> GapLabels:
        """Interval labels from 0-based date indices (None = never seen intact / damaged)."""
        target = (
            np.stack(
                [
                    interval_gap_mask(i, j, n_dates).numpy().astype(np.float32)
                    for i, j in zip(last_intact, first_damaged, strict=True)
                ]
            )
            if len(building_ids)
            else np.zeros((0, n_dates + 1), np.float32)
        )
        return cls(
            building_ids=tuple(building_ids),
            target=target,
            interval=np.ones(len(building_ids), dtype=bool),
            grade=np.asarray(grade if grade is not None else [-1] * len(building_ids), dtype=np.int64),
            block_ids=tuple(block_ids) if block_ids is not None else None,
        )

    @classmethod
    def from_soft(
        cls,
        building_ids: Sequence[str],
        probs: np.ndarray,
        grade: Sequence[int] | np.ndarray | None = None,
        block_ids: Sequence[str] | None = None,
    ) -> GapLabels:
        """Soft targets: rows of gap probabilities (normalised here)."""
        probs = np.asarray(probs, dtype=np.float32)
        if probs.ndim != 2 or len(probs) != len(building_ids):
            raise LabelError(f"soft targets of shape {probs.shape} for {len(building_ids)} buildings")
        if (probs < 0).any() or not np.isfinite(probs).all():
            raise LabelError("soft targets must be finite and non-negative")
        total = probs.sum(axis=1, keepdims=True)
        return cls(
            building_ids=tuple(building_ids),
            target=probs / np.where(total > 0, total, 1.0),
            interval=np.zeros(len(building_ids), dtype=bool),
            grade=np.asarray(grade if grade is not None else [-1] * len(building_ids), dtype=np.int64),
            block_ids=tuple(block_ids) if block_ids is not None else None,
        )

    @classmethod
    def read_csv(cls, path: str | Path, dates: Sequence[dt.date]) -> GapLabels:
        """Read a label CSV (module docstring) against the chip cache's dates.

        Raises:
            LabelError: missing file or columns, empty table, a date not in the timeline, unknown grade.
        """
        path = Path(path)
        if not path.is_file():
            raise LabelError(
                f"{path}: no such label file; export labels first (building_id, last_intact, ...)"
            )
        frame = pd.read_csv(path, dtype={BUILDING_ID: str, BLOCK_ID: str}, keep_default_na=True)
        if BUILDING_ID not in frame.columns:
            raise LabelError(f"{path}: no {BUILDING_ID!r} column (columns seen: {list(frame.columns)})")
        if frame.empty:
            raise LabelError(f"{path}: the label set is empty; label some buildings before training")
        grade = _grades(frame, path)
        blocks = tuple(frame[BLOCK_ID].astype(str)) if BLOCK_ID in frame.columns else None
        ids = tuple(frame[BUILDING_ID].astype(str))
        soft_cols = [c for c in frame.columns if c.startswith(SOFT_PREFIX)]
        if soft_cols:
            if len(soft_cols) != len(dates) + 1:
                raise DataMismatchError(
                    f"{path}: {len(soft_cols)} gap columns but the chip cache has {len(dates)} dates "
                    f"({len(dates) + 1} gaps); the labels come from another timeline"
                )
            probs = frame[[f"{SOFT_PREFIX}{g}" for g in range(len(dates) + 1)]].to_numpy(np.float32)
            labels = cls.from_soft(ids, probs, grade, blocks)
        elif LAST_INTACT in frame.columns and FIRST_DAMAGED in frame.columns:
            index = {d.isoformat(): i for i, d in enumerate(dates)}
            lasts = [
                _date_index(v, index, path, LAST_INTACT, row) for row, v in enumerate(frame[LAST_INTACT])
            ]
            firsts = [
                _date_index(v, index, path, FIRST_DAMAGED, row) for row, v in enumerate(frame[FIRST_DAMAGED])
            ]
            labels = cls.from_intervals(ids, lasts, firsts, len(dates), grade, blocks)
        else:
            raise LabelError(
                f"{path}: needs either {LAST_INTACT}/{FIRST_DAMAGED} or {SOFT_PREFIX}0..{SOFT_PREFIX}T columns "
                f"(columns seen: {list(frame.columns)})"
            )
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        object.__setattr__(labels, "snapshot_id", digest)
        return labels

    def write_csv(self, path: str | Path, dates: Sequence[dt.date]) -> Path:
        """Write the table in the CSV format :meth:`read_csv` reads (soft rows as ``p_gap_*`` columns)."""
        path = Path(path)
        frame = pd.DataFrame({BUILDING_ID: list(self.building_ids)})
        if self.interval.all():
            allowed = self.target > 0
            lo = allowed.argmax(axis=1)
            hi = allowed.shape[1] - 1 - allowed[:, ::-1].argmax(axis=1)
            frame[LAST_INTACT] = [dates[g - 1].isoformat() if g >= 1 else "" for g in lo]
            frame[FIRST_DAMAGED] = [dates[g].isoformat() if g < len(dates) else "" for g in hi]
        else:
            for g in range(self.n_gaps):
                frame[f"{SOFT_PREFIX}{g}"] = self.target[:, g] / self.target.sum(axis=1)
        frame[GRADE] = [GRADES[g] if g >= 0 else "" for g in self.grade]
        if self.block_ids is not None:
            frame[BLOCK_ID] = list(self.block_ids)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
        return path

    def subset(self, rows: np.ndarray) -> GapLabels:
        """The labels of some rows (keeps the snapshot id of the whole set)."""
        return GapLabels(
            building_ids=tuple(self.building_ids[i] for i in rows),
            target=self.target[rows],
            interval=self.interval[rows],
            grade=self.grade[rows],
            block_ids=tuple(self.block_ids[i] for i in rows) if self.block_ids is not None else None,
            snapshot_id=self.snapshot_id,
        )

    def concat(self, other: GapLabels) -> GapLabels:
        """These rows followed by ``other``'s (same timeline; block ids kept only when both carry them).

        Raises:
            DataMismatchError: the two label sets cover different numbers of gaps.
            LabelError: a building appears in both.
        """
        if other.n_gaps != self.n_gaps:
            raise DataMismatchError(
                f"cannot combine labels over {self.n_gaps} and {other.n_gaps} gaps; they belong to other timelines"
            )
        blocks = (
            self.block_ids + other.block_ids
            if self.block_ids is not None and other.block_ids is not None
            else None
        )
        return GapLabels(
            building_ids=self.building_ids + other.building_ids,
            target=np.concatenate([self.target, other.target]).astype(np.float32),
            interval=np.concatenate([self.interval, other.interval]),
            grade=np.concatenate([self.grade, other.grade]),
            block_ids=blocks,
        )

    def with_label_noise(self, epsilon: float) -> GapLabels:
        """Soft rows mixed with a uniform floor: ``(1 - epsilon) q + epsilon / G`` (interval rows unchanged).

        Aggregated crowd posteriors from a few reviews are overconfident (the witnesses are not independent and
        the confusions are estimated); the floor says "this label may be wrong beyond its own confidence", which
        bounds the loss of a wrong label and keeps the temperature fitted on crowd labels from being inflated.
        """
        if not 0.0 <= epsilon < 1.0:
            raise LabelError(f"label_noise must be in [0, 1), got {epsilon}")
        if epsilon == 0.0 or self.interval.all():
            return self
        soft = self.target / self.target.sum(axis=1, keepdims=True)
        mixed = ((1.0 - epsilon) * soft + epsilon / self.n_gaps).astype(np.float32)
        return GapLabels(
            building_ids=self.building_ids,
            target=np.where(self.interval[:, None], self.target, mixed),
            interval=self.interval,
            grade=self.grade,
            block_ids=self.block_ids,
            snapshot_id=self.snapshot_id,
        )

    def hard_gap(self) -> np.ndarray:
        """A representative gap per row: the soft target's mode, or the interval's latest allowed gap."""
        return np.where(
            self.interval,
            self.target.shape[1] - 1 - (self.target[:, ::-1] > 0).argmax(axis=1),
            self.target.argmax(axis=1),
        )

    def class_weights(self) -> np.ndarray:
        """Per-row loss weights (mean 1): damaged and intact balanced, rare already-damaged buildings lifted.

        Damaged and intact buildings count equally. Among damaged ones, buildings damaged before the first image
        (gap 0) never change and must be recognised by appearance; they are rare, so they get up to
        ``1/sqrt`` of their share (at most 3x the weight of a building damaged within the timeline), enough to
        stop the network calling them intact without letting a handful of rows dominate the loss.
        """
        probs = self.target / self.target.sum(axis=1, keepdims=True)
        intact = probs[:, -1] >= 0.5
        before = ~intact & (probs[:, 0] >= 0.5)
        n = len(intact)
        n_intact = max(int(intact.sum()), 1)
        n_damaged = max(n - int(intact.sum()), 1)
        weights = np.where(intact, n / (2 * n_intact), n / (2 * n_damaged)).astype(np.float32)
        n_before = int(before.sum())
        if 0 < n_before < n_damaged:
            lift = min(3.0, float(np.sqrt(n_damaged / n_before)))
            damaged = ~intact
            scaled = np.where(before, lift, 1.0)
            scaled[damaged] *= damaged.sum() / scaled[damaged].sum()  # keep the damaged share unchanged
            weights = weights * np.where(damaged, scaled, 1.0).astype(np.float32)
        return weights / weights.mean()


def _grades(frame: pd.DataFrame, path: Path) -> np.ndarray:
    if GRADE not in frame.columns:
        return np.full(len(frame), -1, dtype=np.int64)
    out = np.full(len(frame), -1, dtype=np.int64)
    for row, value in enumerate(frame[GRADE].fillna("").astype(str).str.strip().str.lower()):
        if value in GRADES:
            out[row] = GRADES.index(value)
        elif value not in ("", "intact", "nan"):
            raise LabelError(
                f"{path}: row {row + 2}: grade {value!r}; use one of {', '.join(GRADES)} or empty"
            )
    return out


def _date_index(value: Any, index: Mapping[str, int], path: Path, column: str, row: int) -> int | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == "":
        return None
    text = str(value).strip()
    if text in index:
        return index[text]
    raise DataMismatchError(
        f"{path}: row {row + 2}: {column}={text!r} is not a date of the chip cache's timeline "
        f"({', '.join(list(index)[:4])}, ...); the labels belong to another timeline"
    )


def read_audit_gaps(path: str | Path, chips: ChipArrays) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the chip cache and their reference gaps from an audit file.

    The file is a scenario ``truth.csv`` (a ``true_gap`` column) or a label CSV (gaps from :meth:`GapLabels.hard_gap`).

    Raises:
        LabelError: missing/empty file, or buildings the cache lacks.
        DataMismatchError: gaps or dates that do not fit the cache's timeline.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: no such audit file; give a truth.csv or a label CSV")
    frame = pd.read_csv(path, dtype={BUILDING_ID: str})
    if "true_gap" in frame.columns and BUILDING_ID in frame.columns:
        if frame.empty:
            raise LabelError(f"{path}: the audit set is empty")
        gaps = frame["true_gap"].to_numpy(np.int64)
        if gaps.min() < 0 or gaps.max() > chips.n_dates:
            raise DataMismatchError(
                f"{path}: true_gap values {gaps.min()}..{gaps.max()} do not fit the cache's {chips.n_dates} dates "
                f"(0..{chips.n_dates}); the audit set belongs to another timeline"
            )
        ids = list(frame[BUILDING_ID])
    else:
        labels = GapLabels.read_csv(path, chips.dates)
        ids, gaps = list(labels.building_ids), labels.hard_gap()
    return chips.positions(ids), gaps
