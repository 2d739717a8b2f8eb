"""The chip cache as the network sees it: :class:`ChipArrays` (co-registered reads, day offsets, row lookup)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.errors import DataMismatchError, LabelError
from model.registration import Registration, apply_offsets, load_or_estimate

__all__ = ["ChipArrays"]


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
