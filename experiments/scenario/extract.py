"""The shipped UNOSAT extract: a compact CSV of the Raqqa damage points, read by the layout.

``write_extract`` derives ``experiments/data/raqqa_unosat_damage.csv`` from the published GeoPackage (kept in
the repository so the project runs on a fresh machine); ``read_extract`` loads it back as typed arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.scenario.errors import ScenarioDataError

__all__ = ["DEFAULT_EXTRACT", "GRADE_DATES", "DamagePoints", "read_extract", "write_extract"]

DEFAULT_EXTRACT = Path(__file__).resolve().parents[1] / "data" / "raqqa_unosat_damage.csv"
GRADE_DATES = ("2013-10-22", "2014-02-12", "2015-05-29", "2017-02-03", "2017-10-21")
_GRADE_COLUMNS = tuple(f"g{d.replace('-', '')}" for d in GRADE_DATES)


@dataclass(frozen=True)
class DamagePoints:
    """UNOSAT damage sites.

    Attributes:
        fid: original feature id in the GeoPackage.
        lon / lat: WGS84 coordinates.
        grades: ``[N, 5]`` float grades per UNOSAT date (3 destroyed, 2 severe, 1 moderate, 0 none, NaN not
            recorded), in the order of ``GRADE_DATES``.
    """

    fid: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    grades: np.ndarray

    def __len__(self) -> int:
        return len(self.fid)


def write_extract(gpkg: Path, out: Path = DEFAULT_EXTRACT) -> int:
    """Write the compact CSV extract of the UNOSAT GeoPackage; returns the number of points written."""
    import geopandas as gpd

    frame = gpd.read_file(gpkg, layer="raqqa_damage").set_crs("EPSG:4326", allow_override=True)
    table = pd.DataFrame(
        {
            "fid": np.arange(1, len(frame) + 1),
            "lon": frame.geometry.x.round(7),
            "lat": frame.geometry.y.round(7),
        }
    )
    for date, column in zip(GRADE_DATES, _GRADE_COLUMNS, strict=True):
        table[column] = frame[date].astype("Int8")
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return len(table)


def read_extract(path: Path = DEFAULT_EXTRACT) -> DamagePoints:
    """Read the CSV extract.

    Raises:
        ScenarioDataError: the file is missing or lacks a column.
    """
    if not path.is_file():
        raise ScenarioDataError(
            f"{path}: UNOSAT extract not found; regenerate it with "
            "experiments.scenario.extract.write_extract(<raqqa_unosat_damage.gpkg>)"
        )
    table = pd.read_csv(path)
    missing = [c for c in ("fid", "lon", "lat", *_GRADE_COLUMNS) if c not in table.columns]
    if missing:
        raise ScenarioDataError(
            f"{path}: missing columns {missing}; regenerate the extract with write_extract"
        )
    return DamagePoints(
        fid=table["fid"].to_numpy(np.int64),
        lon=table["lon"].to_numpy(np.float64),
        lat=table["lat"].to_numpy(np.float64),
        grades=table[list(_GRADE_COLUMNS)].to_numpy(np.float64),
    )
