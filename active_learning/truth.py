"""Ground truth of a scenario folder: the one reader of ``scenario.json``, ``truth.csv`` and ``truth_dates.csv``.

Benchmarks, simulated volunteers, the demo and tests all read a scenario's truth through :func:`load_truth`
(docs/CONTRACTS.md, "Scenario folder"). Building ids are read as strings everywhere (``"007"`` stays
``"007"``), so joins with chip caches, stores and label files never miss. :class:`BuildingTruth` is what a
perfect observer would report about one building; simulated volunteers (``active_learning.volunteers``) answer
from it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from active_learning.errors import TruthFileError
from active_learning.schema import State

__all__ = ["TRUTH_COLUMNS", "TRUTH_DATE_COLUMNS", "BuildingTruth", "ScenarioTruth", "load_truth"]

TRUTH_COLUMNS = ("building_id", "true_gap", "difficulty", "partial")
"""Columns of ``truth.csv`` every reader needs (the generator writes more; they are kept as read)."""
TRUTH_DATE_COLUMNS = ("building_id", "date_index", "state", "visible")
"""Columns of ``truth_dates.csv`` every reader needs."""
_BOOLEAN_COLUMNS = ("partial", "cleared", "rebuilt")


@dataclass(frozen=True)
class BuildingTruth:
    """What a perfect observer would report about one building.

    Attributes:
        building_id: the building's id.
        true_gap: the destruction gap in ``0..T`` (T = never damaged).
        states: true state per date (intact / damaged / destroyed), in date order.
        visible: per date, False where cloud or nodata hides the building.
        difficulty: 0 (large, clear, fully destroyed) .. 1 (small, cloudy at the change, partial damage).
        partial: the damage is partial (easy to miss).
    """

    building_id: str
    true_gap: int
    states: tuple[State, ...]
    visible: tuple[bool, ...]
    difficulty: float = 0.0
    partial: bool = False

    def __post_init__(self) -> None:
        if len(self.states) != len(self.visible):
            raise ValueError(
                f"{self.building_id}: {len(self.states)} states but {len(self.visible)} visibility flags"
            )
        if not 0 <= self.true_gap <= len(self.states):
            raise ValueError(f"{self.building_id}: true_gap {self.true_gap} outside 0..{len(self.states)}")

    @property
    def n_dates(self) -> int:
        return len(self.states)


@dataclass(frozen=True)
class ScenarioTruth:
    """A scenario's truth.

    Attributes:
        scenario: the parsed ``scenario.json``.
        dates: acquisition dates.
        buildings: ``truth.csv``, one row per building (ids as strings, booleans parsed).
        per_date: ``truth_dates.csv``, one row per building and date (``state`` as the State code, ``visible``
            parsed), sorted by building and date index.
    """

    scenario: dict[str, Any]
    dates: tuple[dt.date, ...]
    buildings: pd.DataFrame
    per_date: pd.DataFrame

    @property
    def n_dates(self) -> int:
        return len(self.dates)

    def true_gaps(self) -> dict[str, int]:
        """Building id -> its true destruction gap."""
        return dict(zip(self.buildings["building_id"], self.buildings["true_gap"].astype(int), strict=True))

    def building_truths(self) -> tuple[BuildingTruth, ...]:
        """One :class:`BuildingTruth` per building of ``truth.csv``, in its order."""
        per_building = dict(iter(self.per_date.groupby("building_id", sort=False)))
        out = []
        for row in self.buildings.itertuples(index=False):
            b = str(row.building_id)
            group = per_building.get(b)
            if group is None or list(group["date_index"]) != list(range(self.n_dates)):
                raise TruthFileError(
                    f"truth_dates.csv: building {b!r} needs one row per date index 0..{self.n_dates - 1}; "
                    "regenerate the scenario"
                )
            out.append(
                BuildingTruth(
                    building_id=b,
                    true_gap=int(row.true_gap),
                    states=tuple(State(int(s)) for s in group["state"]),
                    visible=tuple(bool(v) for v in group["visible"]),
                    difficulty=float(row.difficulty),
                    partial=bool(row.partial),
                )
            )
        return tuple(out)


def load_truth(folder: str | Path) -> ScenarioTruth:
    """Read the truth of the scenario folder ``folder``.

    Raises:
        TruthFileError: a file is missing, lacks columns or holds values that cannot be parsed.
    """
    folder = Path(folder)
    meta_path = folder / "scenario.json"
    if not meta_path.is_file():
        raise TruthFileError(
            f"{meta_path}: not found; {folder} is not a scenario folder "
            "(generate one with `striketracker scenario --out DIR`)"
        )
    try:
        scenario = json.loads(meta_path.read_text())
        dates = tuple(dt.date.fromisoformat(d) for d in scenario["dates"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise TruthFileError(
            f"{meta_path}: cannot read the dates ({exc!r}); regenerate the scenario"
        ) from None
    buildings = _read_csv(folder / "truth.csv", TRUTH_COLUMNS)
    for col in _BOOLEAN_COLUMNS:
        if col in buildings.columns:
            buildings[col] = _booleans(buildings[col], folder / "truth.csv", col)
    try:
        buildings["true_gap"] = buildings["true_gap"].astype(int)
        buildings["difficulty"] = buildings["difficulty"].astype(float)
    except ValueError as exc:
        raise TruthFileError(f"{folder / 'truth.csv'}: {exc}; true_gap must be an integer") from None
    per_date = _read_csv(folder / "truth_dates.csv", TRUTH_DATE_COLUMNS)
    try:
        per_date["state"] = per_date["state"].map(lambda v: int(State.parse(v)))
    except ValueError as exc:
        raise TruthFileError(f"{folder / 'truth_dates.csv'}: {exc}; fix the state column") from None
    per_date["visible"] = _booleans(per_date["visible"], folder / "truth_dates.csv", "visible")
    per_date = per_date.sort_values(["building_id", "date_index"], kind="stable").reset_index(drop=True)
    return ScenarioTruth(scenario=scenario, dates=dates, buildings=buildings, per_date=per_date)


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise TruthFileError(f"{path}: not found; generate the scenario with `striketracker scenario`")
    try:
        df = pd.read_csv(path, keep_default_na=False, dtype={"building_id": str, "block_id": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise TruthFileError(f"{path}: cannot be read as CSV ({exc}); regenerate the scenario") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise TruthFileError(
            f"{path}: lacks columns {missing} (has {list(df.columns)}); see docs/CONTRACTS.md"
        )
    return df


def _booleans(values: pd.Series, path: Path, column: str) -> pd.Series:
    parsed = values.map(_parse_bool)
    if parsed.isna().any():
        bad = values[parsed.isna()].iloc[0]
        raise TruthFileError(f"{path}: {column} must be true/false, got {bad!r}")
    return parsed.astype(bool)


def _parse_bool(value: object) -> bool | None:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    text = str(value).strip().lower()
    if text in {"true", "1", "yes", "1.0"}:
        return True
    if text in {"false", "0", "no", "0.0"}:
        return False
    return None
