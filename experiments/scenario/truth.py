"""Read a scenario folder's truth back (for benchmarks, simulated volunteers and tests)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.scenario.errors import ScenarioOutputError

__all__ = ["TRUTH_COLUMNS", "TRUTH_DATE_COLUMNS", "ScenarioTruth", "load_truth"]

TRUTH_COLUMNS = (
    "building_id",
    "true_gap",
    "last_intact_date",
    "first_damaged_date",
    "destroyed_gap",
    "final_grade",
    "partial",
    "cleared",
    "rebuilt",
    "area_m2",
    "cloud_at_change",
    "difficulty",
    "block_id",
    "source",
)
TRUTH_DATE_COLUMNS = ("building_id", "date_index", "state", "cloud_fraction", "visible")


@dataclass(frozen=True)
class ScenarioTruth:
    """A scenario's truth.

    Attributes:
        scenario: the parsed scenario.json.
        dates: acquisition dates.
        buildings: truth.csv, one row per building (booleans parsed).
        per_date: truth_dates.csv, one row per building and date.
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


def _read(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise ScenarioOutputError(
            f"{path}: missing; regenerate with `striketracker scenario --out {path.parent}`"
        )
    frame = pd.read_csv(path, keep_default_na=False, dtype={"building_id": str, "block_id": str})
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ScenarioOutputError(f"{path}: missing columns {missing}; regenerate the scenario")
    return frame


def load_truth(out: Path) -> ScenarioTruth:
    """Load ``scenario.json``, ``truth.csv`` and ``truth_dates.csv`` of the scenario folder ``out``.

    Raises:
        ScenarioOutputError: a file or column is missing.
    """
    out = Path(out)
    meta_path = out / "scenario.json"
    if not meta_path.is_file():
        raise ScenarioOutputError(f"{meta_path}: missing; {out} is not a scenario folder")
    scenario = json.loads(meta_path.read_text())
    buildings = _read(out / "truth.csv", TRUTH_COLUMNS)
    for col in ("partial", "cleared", "rebuilt"):
        buildings[col] = buildings[col].astype(str).eq("True")
    per_date = _read(out / "truth_dates.csv", TRUTH_DATE_COLUMNS)
    per_date["visible"] = per_date["visible"].astype(str).eq("True")
    return ScenarioTruth(
        scenario=scenario,
        dates=tuple(dt.date.fromisoformat(d) for d in scenario["dates"]),
        buildings=buildings,
        per_date=per_date,
    )
