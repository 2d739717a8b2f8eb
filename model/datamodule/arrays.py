"""The chip cache as the network sees it: :class:`ChipArrays` (co-registered reads, day offsets, row lookup).

Several caches (scenes, e.g. the tiles of a city or several xBD scenes of one event) can be read as one with
:meth:`ChipArrays.concat`: rows of the first scene, then the second, ... Each scene keeps its own
co-registration and its own dates, so scenes need the same number of dates but not the same days.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
        scenes: the caches this one concatenates (:meth:`concat`), empty for one cache. ``dates`` are then the
            first scene's; :meth:`days_of` gives each row its own scene's days.
    """

    building_ids: tuple[str, ...]
    dates: tuple[dt.date, ...]
    chips: np.ndarray = field(repr=False)
    mask: np.ndarray = field(repr=False)
    valid: np.ndarray = field(repr=False)
    fingerprint: str = ""
    origins: np.ndarray | None = field(default=None, repr=False)
    registration: Registration | None = field(default=None, repr=False)
    scenes: tuple[ChipArrays, ...] = field(default=(), repr=False)

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

    @classmethod
    def concat(cls, scenes: Sequence[ChipArrays]) -> ChipArrays:
        """Several caches read as one (module docstring); a single scene is returned as it is.

        Raises:
            DataMismatchError: the scenes differ in number of dates, bands or chip size, or share building ids.
        """
        scenes = tuple(scenes)
        if not scenes:
            raise DataMismatchError("no chip cache given; pass at least one --data.cache")
        if len(scenes) == 1:
            return scenes[0]
        first = scenes[0]
        for i, scene in enumerate(scenes[1:], start=1):
            if scene.chips.shape[1:] != first.chips.shape[1:]:
                raise DataMismatchError(
                    f"scene {i} has chips of shape {tuple(scene.chips.shape[1:])} (dates, bands, size, size) but "
                    f"scene 0 has {tuple(first.chips.shape[1:])}; ingest every scene with the same chip size and "
                    "train only scenes with the same number of dates together"
                )
        ids = [b for scene in scenes for b in scene.building_ids]
        repeated = sorted(b for b, n in Counter(ids).items() if n > 1)
        if repeated:
            raise DataMismatchError(
                f"{len(repeated)} building id(s) appear in more than one scene (e.g. {repeated[:5]}); building "
                "ids must be unique across the scenes trained together (prefix them with the scene name)"
            )
        origins = (
            np.concatenate([s.origins for s in scenes])  # type: ignore[misc]
            if all(s.origins is not None for s in scenes)
            else None
        )
        return cls(
            building_ids=tuple(ids),
            dates=first.dates,
            chips=_Rows([s.chips for s in scenes]),  # type: ignore[arg-type]
            mask=_Rows([s.mask for s in scenes]),  # type: ignore[arg-type]
            valid=np.concatenate([s.valid for s in scenes]).astype(np.float32),
            fingerprint=hashlib.sha256("\n".join(s.fingerprint for s in scenes).encode()).hexdigest(),
            origins=origins,
            scenes=scenes,
        )

    @property
    def scene_of_rows(self) -> np.ndarray:
        """Scene index of every row, int64 ``[N]`` (all 0 for one cache)."""
        if not self.scenes:
            return np.zeros(len(self.building_ids), dtype=np.int64)
        return np.repeat(np.arange(len(self.scenes)), [len(s.building_ids) for s in self.scenes])

    def _scene(self, row: int) -> tuple[ChipArrays, int]:
        starts = np.cumsum([0] + [len(s.building_ids) for s in self.scenes])
        k = int(np.searchsorted(starts, row, side="right")) - 1
        return self.scenes[k], row - int(starts[k])

    @property
    def registration_px(self) -> list[list[int]] | None:
        """The per-date ``[rows, cols]`` shifts chips are read with (for evidence records), or None.

        For several scenes, the first scene's (each scene reads with its own, see ``scenes``).
        """
        if self.scenes:
            return self.scenes[0].registration_px
        return None if self.registration is None else self.registration.offsets.tolist()

    def read(self, row: int) -> np.ndarray:
        """One building's chips ``[T, C, H, W]``, registered when the cache has a registration."""
        if self.scenes:
            scene, local = self._scene(row)
            return scene.read(local)
        stack = np.asarray(self.chips[row])
        return stack if self.registration is None else apply_offsets(stack, self.registration.offsets)

    def read_many(self, rows: np.ndarray) -> np.ndarray:
        """Chips ``[len(rows), T, C, H, W]`` of several buildings (see :meth:`read`)."""
        if not self.scenes and (self.registration is None or self.registration.is_identity):
            return np.asarray(self.chips[rows])
        return np.stack([self.read(int(r)) for r in rows]) if len(rows) else np.asarray(self.chips[rows])

    @property
    def n_dates(self) -> int:
        return len(self.dates)

    def days(self) -> np.ndarray:
        """Days since the first acquisition, float32 ``[T]`` (of the first scene; see :meth:`days_of`)."""
        return np.array([(d - self.dates[0]).days for d in self.dates], dtype=np.float32)

    def days_of(self, row: int) -> np.ndarray:
        """Days since the first acquisition of the row's own scene, float32 ``[T]``."""
        if self.scenes:
            scene, _ = self._scene(row)
            return scene.days()
        return self.days()

    def blocks(self, rows: np.ndarray, block_size_m: float) -> np.ndarray:
        """Spatial block key of the given rows: a ``block_size_m`` grid over chip origins, per scene.

        Raises:
            LabelError: the cache has no chip origins.
        """
        from model.datamodule.splits import spatial_blocks

        if self.origins is None:
            raise LabelError("the chip cache has no chip origins; add a block_id column to the labels")
        keys = spatial_blocks(self.origins[rows], block_size_m)
        if not self.scenes:
            return keys
        return np.array([f"s{k}:{key}" for k, key in zip(self.scene_of_rows[rows], keys, strict=True)])

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


class _Rows:
    """Row-wise concatenation of several arrays, read on demand (memory-mapped caches stay on disk).

    Supports what readers of :class:`ChipArrays` use: ``shape``, ``ndim``, ``len`` and indexing by a row, an
    array or list of rows, or a slice of rows (further indices apply within the rows).
    """

    def __init__(self, parts: Sequence[np.ndarray]) -> None:
        self.parts = list(parts)
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])
        self.shape = (int(self.starts[-1]), *self.parts[0].shape[1:])
        self.ndim = len(self.shape)
        self.dtype = self.parts[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        rest: tuple[Any, ...] = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, int | np.integer):
            row = int(key) + (self.shape[0] if key < 0 else 0)
            k = int(np.searchsorted(self.starts, row, side="right")) - 1
            return np.asarray(self.parts[k][(row - int(self.starts[k]), *rest)])
        rows = np.arange(self.shape[0])[key] if isinstance(key, slice) else np.asarray(key, dtype=np.int64)
        if rows.ndim == 0:
            return self[(int(rows), *rest)]
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        for i, row in enumerate(rows):
            out[i] = self[int(row)]
        return out[(slice(None), *rest)] if rest else out
