"""Labels and chips for training: the gap-label table, the per-building dataset and the spatial-block split.

Labels enter as a table, never as volunteer answers: each labelled building carries either a *soft target*
(probabilities over gaps 0..T, e.g. an aggregated crowd posterior) or an *interval* (last date seen intact,
first date seen damaged; the loss marginalises over the gaps it allows), and optionally the final grade.
On disk the table is a CSV with ``building_id`` and either ``last_intact``/``first_damaged`` (ISO dates of the
chip cache's timeline, empty for "never seen") or ``p_gap_0 .. p_gap_T`` columns, plus an optional ``grade``
(``damaged``/``destroyed``) and ``block_id``.

Splits are by spatial block (the ``block_id`` column, or a grid over the chip origins), never by random
building, so validation is honest about spatial correlation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from model.changepoint import interval_gap_mask
from model.errors import DataMismatchError, LabelError
from model.registration import Registration, apply_offsets, load_or_estimate

__all__ = [
    "GRADES",
    "ChipArrays",
    "ChipDataModule",
    "ChipDataset",
    "GapLabels",
    "spatial_blocks",
    "split_by_blocks",
]

GRADES = ("damaged", "destroyed")
BUILDING_ID = "building_id"
LAST_INTACT = "last_intact"
FIRST_DAMAGED = "first_damaged"
GRADE = "grade"
BLOCK_ID = "block_id"
SOFT_PREFIX = "p_gap_"


@dataclass(frozen=True)
class ChipArrays:
    """The chip cache as the network sees it (a :class:`model.chips.ChipStack` or arrays made in memory).

    Attributes:
        building_ids: ids, row i of every array.
        dates: acquisition dates.
        chips: uint8 ``[N, T, C, H, W]``.
        mask: uint8 ``[N, H, W]``, 255 inside the footprint.
        valid: float32 ``[N, T]``.
        fingerprint: the cache fingerprint (identifies the data a model saw).
        origins: ``[N, 2]`` chip origins in metres (x, y) for block splits; None when unknown.
        registration: per-date shifts applied when chips are read (:mod:`model.registration`); None reads
            them as stored.
    """

    building_ids: tuple[str, ...]
    dates: tuple[dt.date, ...]
    chips: np.ndarray = field(repr=False)
    mask: np.ndarray = field(repr=False)
    valid: np.ndarray = field(repr=False)
    fingerprint: str = ""
    origins: np.ndarray | None = field(default=None, repr=False)
    registration: Registration | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        n, t = len(self.building_ids), len(self.dates)
        if self.chips.ndim != 5 or self.chips.shape[:2] != (n, t):
            raise DataMismatchError(
                f"chips shape {self.chips.shape} does not match {n} buildings x {t} dates; re-run ingest"
            )
        if self.valid.shape != (n, t) or self.mask.shape[0] != n:
            raise DataMismatchError(f"valid {self.valid.shape} / mask {self.mask.shape} do not match chips")

    @classmethod
    def open(cls, cache: str | Path, *, register: bool = True) -> ChipArrays:
        """Open a chip cache folder written by :func:`model.chips.ingest`.

        With ``register`` (the default) every read moves each date onto the timeline's common frame, with the
        per-date shifts stored beside the chips (estimated and written on first open,
        :func:`model.registration.load_or_estimate`).
        """
        from model.chips import ChipStack

        stack = ChipStack.open(Path(cache))
        origins = np.asarray(stack.manifest.get("chip_origin", []), dtype=np.float64)
        valid = np.asarray(stack.valid, dtype=np.float32)
        registration = (
            load_or_estimate(Path(cache), stack.chips, valid, stack.fingerprint) if register else None
        )
        return cls(
            building_ids=stack.building_ids,
            dates=stack.dates,
            chips=stack.chips,
            mask=stack.mask,
            valid=valid,
            fingerprint=stack.fingerprint,
            origins=origins if origins.shape == (len(stack), 2) else None,
            registration=registration,
        )

    @property
    def registration_px(self) -> list[list[int]] | None:
        """The per-date ``[rows, cols]`` shifts chips are read with (for evidence records), or None."""
        return None if self.registration is None else self.registration.offsets.tolist()

    def read(self, row: int) -> np.ndarray:
        """One building's chips ``[T, C, H, W]``, registered when the cache has a registration."""
        stack = np.asarray(self.chips[row])
        return stack if self.registration is None else apply_offsets(stack, self.registration.offsets)

    def read_many(self, rows: np.ndarray) -> np.ndarray:
        """Chips ``[len(rows), T, C, H, W]`` of several buildings (see :meth:`read`)."""
        if self.registration is None or self.registration.is_identity:
            return np.asarray(self.chips[rows])
        return np.stack([self.read(int(r)) for r in rows]) if len(rows) else np.asarray(self.chips[rows])

    @property
    def n_dates(self) -> int:
        return len(self.dates)

    def days(self) -> np.ndarray:
        """Days since the first acquisition, float32 ``[T]``."""
        return np.array([(d - self.dates[0]).days for d in self.dates], dtype=np.float32)

    def positions(self, building_ids: Sequence[str]) -> np.ndarray:
        """Rows of the given ids.

        Raises:
            LabelError: some ids are not in the cache (named).
        """
        lookup = {b: i for i, b in enumerate(self.building_ids)}
        missing = [b for b in building_ids if b not in lookup]
        if missing:
            shown = ", ".join(missing[:10]) + (", ..." if len(missing) > 10 else "")
            raise LabelError(
                f"{len(missing)} labelled building(s) are not in the chip cache (ids {shown}); "
                "the labels belong to another scenario or the buildings were rejected at ingestion"
            )
        return np.array([lookup[b] for b in building_ids], dtype=np.int64)


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


def spatial_blocks(origins: np.ndarray, block_size_m: float) -> np.ndarray:
    """Block key per building from a square grid of ``block_size_m`` over chip origins ``[N, 2]``."""
    cells = np.floor(origins / block_size_m).astype(np.int64)
    return np.array([f"{x}_{y}" for x, y in cells])


def split_by_blocks(
    blocks: Sequence[str] | np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of train and validation: whole blocks go to validation until ``val_fraction`` of rows is reached.

    Raises:
        LabelError: fewer than two blocks (no honest split possible).
    """
    keys = np.asarray(blocks)
    unique = np.unique(keys)
    if len(unique) < 2:
        raise LabelError(
            f"all {len(keys)} labelled buildings lie in one spatial block; a block split needs at least two "
            "(lower block_size_m or label buildings in more places)"
        )
    order = np.random.default_rng(seed).permutation(unique)
    target = val_fraction * len(keys)
    val_blocks: list[str] = []
    count = 0
    for block in order:
        if count >= target or len(val_blocks) == len(unique) - 1:
            break
        val_blocks.append(block)
        count += int((keys == block).sum())
    val = np.isin(keys, val_blocks)
    return np.flatnonzero(~val), np.flatnonzero(val)


class ChipDataset(Dataset[dict[str, torch.Tensor]]):
    """One item per building: its chips, mask, validity, day offsets and (when labelled) its targets."""

    def __init__(
        self,
        chips: ChipArrays,
        rows: np.ndarray,
        labels: GapLabels | None = None,
        weights: np.ndarray | None = None,
    ) -> None:
        self.chips = chips
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = labels
        self.weights = weights
        self.days = torch.from_numpy(chips.days())
        if labels is not None and len(labels.building_ids) != len(self.rows):
            raise LabelError(f"{len(labels.building_ids)} label rows for {len(self.rows)} buildings")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        row = int(self.rows[i])
        item = {
            "chips": torch.from_numpy(np.array(self.chips.read(row))),
            "mask": torch.from_numpy(np.array(self.chips.mask[row])),
            "valid": torch.from_numpy(np.array(self.chips.valid[row], dtype=np.float32)),
            "days": self.days,
            "row": torch.tensor(row),
        }
        if self.labels is not None:
            item["target"] = torch.from_numpy(self.labels.target[i])
            item["interval"] = torch.tensor(bool(self.labels.interval[i]))
            item["grade"] = torch.tensor(int(self.labels.grade[i]))
            w = 1.0 if self.weights is None else float(self.weights[i])
            item["weight"] = torch.tensor(w, dtype=torch.float32)
        return item


class ChipDataModule(L.LightningDataModule):
    """Chip cache + label table -> block-split train/val loaders, and a predict loader over every building.

    Args:
        cache: chip cache folder (or pass ``chip_arrays``).
        labels: label CSV (or pass ``gap_labels``).
        val_fraction: share of labelled buildings (by whole blocks) held out for validation.
        block_size_m: grid cell for block splits when the labels carry no ``block_id``.
        batch_size: buildings per batch.
        num_workers: DataLoader workers.
        seed: split seed.
        class_balance: weight the loss so damaged and intact buildings count equally.
        label_noise: uniform floor mixed into soft (crowd) label rows for training, see
            :meth:`GapLabels.with_label_noise`.
        calibration_label_noise: the (smaller) floor of the validation labels the temperature is fitted on. A
            large floor makes confident disagreement with the crowd cheap, and the fitted temperature then
            collapses towards a needlessly sharp posterior once the network fits its labels well.
        calibration_prior_buildings: validation buildings the temperature fit must see before it outweighs
            the prior belief that the trained network is calibrated (:func:`model.calibration.shrink_temperature`).
            On the district benchmark (120-160 validation buildings, crowd labels) fitted temperatures of
            0.6-1.6 made ECE on the unseen scenario worse than no scaling on most seed pairs.
        expected_fingerprint: refuse a cache with another fingerprint (e.g. the one a model was trained on).
        pseudo_labels: optional label CSV of *pseudo-labels* (e.g. a previous model's confident posteriors on
            unlabelled buildings, :func:`model.predict.pseudo_labels`). They only ever join the training rows:
            buildings that have a real label, or lie in a validation block, are dropped from them, so validation
            and the temperature stay fitted on real labels.
        pseudo_weight: loss weight of a pseudo-labelled building relative to a labelled one.
        chip_arrays / gap_labels / pseudo_gap_labels: in-memory data instead of paths (benchmarks, tests).
    """

    def __init__(
        self,
        cache: str | None = None,
        labels: str | None = None,
        val_fraction: float = 0.2,
        block_size_m: float = 200.0,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        class_balance: bool = True,
        label_noise: float = 0.1,
        calibration_label_noise: float = 0.03,
        calibration_prior_buildings: float = 1000.0,
        expected_fingerprint: str | None = None,
        pseudo_labels: str | None = None,
        pseudo_weight: float = 0.5,
        chip_arrays: ChipArrays | None = None,
        gap_labels: GapLabels | None = None,
        pseudo_gap_labels: GapLabels | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["chip_arrays", "gap_labels", "pseudo_gap_labels"])
        if not 0.0 < pseudo_weight <= 1.0:
            raise LabelError(f"pseudo_weight must be in (0, 1], got {pseudo_weight}")
        self.cache = cache
        self.labels_path = labels
        self.val_fraction = val_fraction
        self.block_size_m = block_size_m
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.class_balance = class_balance
        self.label_noise = label_noise
        self.calibration_label_noise = calibration_label_noise
        if calibration_prior_buildings < 0:
            raise LabelError(f"calibration_prior_buildings must be >= 0, got {calibration_prior_buildings}")
        self.calibration_prior_buildings = calibration_prior_buildings
        self.expected_fingerprint = expected_fingerprint
        self._chips = chip_arrays
        self._labels = gap_labels
        self.pseudo_labels_path = pseudo_labels
        self.pseudo_weight = pseudo_weight
        self._pseudo = pseudo_gap_labels
        self.train_rows: np.ndarray | None = None
        self.val_rows: np.ndarray | None = None
        self.pseudo: GapLabels | None = None
        """The pseudo-labels kept for training (after :meth:`setup`), or None."""

    @property
    def chips(self) -> ChipArrays:
        """The chip arrays (opened on first use)."""
        if self._chips is None:
            if self.cache is None:
                raise LabelError("ChipDataModule needs a chip cache: pass cache=PATH or chip_arrays")
            self._chips = ChipArrays.open(self.cache)
        if self.expected_fingerprint and self._chips.fingerprint != self.expected_fingerprint:
            raise DataMismatchError(
                f"chip cache fingerprint {self._chips.fingerprint[:12]} differs from the expected "
                f"{self.expected_fingerprint[:12]}; the cache comes from another scenario or ingestion"
            )
        return self._chips

    @property
    def labels(self) -> GapLabels:
        """The label table (read on first use), checked against the cache's timeline."""
        if self._labels is None:
            if self.labels_path is None:
                raise LabelError("ChipDataModule needs labels: pass labels=PATH (CSV) or gap_labels")
            self._labels = GapLabels.read_csv(self.labels_path, self.chips.dates)
        if self._labels.n_gaps != self.chips.n_dates + 1:
            raise DataMismatchError(
                f"labels have {self._labels.n_gaps} gaps but the chip cache has {self.chips.n_dates} dates; "
                "the labels belong to another timeline"
            )
        return self._labels

    @property
    def training_labels(self) -> GapLabels:
        """The labels as the loss sees them (soft rows with the label-noise floor)."""
        return self.labels.with_label_noise(self.label_noise)

    @property
    def calibration_labels(self) -> GapLabels:
        """The labels as the temperature fit sees them (soft rows with the calibration floor)."""
        return self.labels.with_label_noise(self.calibration_label_noise)

    def blocks(self) -> np.ndarray:
        """Spatial block of every labelled building."""
        labels = self.labels
        if labels.block_ids is not None:
            return np.asarray(labels.block_ids)
        origins = self.chips.origins
        if origins is None:
            raise LabelError(
                "labels carry no block_id and the chip cache no chip origins; add a block_id column"
            )
        return spatial_blocks(origins[self.chips.positions(labels.building_ids)], self.block_size_m)

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" or self.train_rows is not None:
            return
        labels = self.labels
        self.positions = self.chips.positions(labels.building_ids)
        self.train_rows, self.val_rows = split_by_blocks(self.blocks(), self.val_fraction, self.seed)
        self.weights = labels.class_weights() if self.class_balance else np.ones(len(labels.building_ids))
        self.pseudo = self._training_pseudo_labels(self.val_rows)

    def _training_pseudo_labels(self, val_rows: np.ndarray) -> GapLabels | None:
        """The pseudo-labels usable for training: not labelled for real, not near a validation building.

        "Near" is the same ``block_size_m`` grid cell of chip origins as a validation building (whatever block
        keys the labels carry), or, for a cache without origins, the same ``block_id``.
        """
        pseudo = self._pseudo
        if pseudo is None and self.pseudo_labels_path is not None:
            pseudo = GapLabels.read_csv(self.pseudo_labels_path, self.chips.dates)
        if pseudo is None:
            return None
        if pseudo.n_gaps != self.chips.n_dates + 1:
            raise DataMismatchError(
                f"pseudo-labels have {pseudo.n_gaps} gaps but the chip cache has {self.chips.n_dates} dates; "
                "they belong to another timeline"
            )
        origins = self.chips.origins
        if origins is not None:
            cells = spatial_blocks(origins, self.block_size_m)
            near_val = np.isin(
                cells[self.chips.positions(pseudo.building_ids)], cells[self.positions[val_rows]]
            )
        elif pseudo.block_ids is not None and self.labels.block_ids is not None:
            near_val = np.isin(np.asarray(pseudo.block_ids), self.blocks()[val_rows])
        else:
            raise LabelError(
                "the chip cache has no chip origins and the pseudo-labels no block_id column; add block_id to "
                "the labels and the pseudo-labels"
            )
        labelled = np.isin(np.asarray(pseudo.building_ids), np.asarray(self.labels.building_ids))
        keep = np.flatnonzero(~labelled & ~near_val)
        return pseudo.subset(keep) if len(keep) else None

    def _dataset(self, rows: np.ndarray) -> ChipDataset:
        labels = self.training_labels.subset(rows)
        return ChipDataset(self.chips, self.positions[rows], labels, self.weights[rows])

    def _train_dataset(self) -> ChipDataset:
        """Labelled training rows, plus the kept pseudo-labels at ``pseudo_weight``."""
        assert self.train_rows is not None
        if self.pseudo is None:
            return self._dataset(self.train_rows)
        labels = self.training_labels.subset(self.train_rows)
        pseudo = self.pseudo.with_label_noise(self.label_noise)
        pseudo_weights = pseudo.class_weights() if self.class_balance else np.ones(len(pseudo.building_ids))
        return ChipDataset(
            self.chips,
            np.concatenate([self.positions[self.train_rows], self.chips.positions(pseudo.building_ids)]),
            labels.concat(pseudo),
            np.concatenate([self.weights[self.train_rows], self.pseudo_weight * pseudo_weights]),
        )

    def train_dataloader(self) -> DataLoader[dict[str, torch.Tensor]]:
        assert self.train_rows is not None
        return DataLoader(
            self._train_dataset(),
            batch_size=self.batch_size,
            shuffle=True,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def val_dataloader(self) -> DataLoader[dict[str, torch.Tensor]]:
        assert self.val_rows is not None
        return DataLoader(
            self._dataset(self.val_rows), batch_size=self.batch_size, num_workers=self.num_workers
        )

    def predict_dataloader(self) -> DataLoader[dict[str, torch.Tensor]]:
        rows = np.arange(len(self.chips.building_ids))
        return DataLoader(
            ChipDataset(self.chips, rows), batch_size=self.batch_size, num_workers=self.num_workers
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
