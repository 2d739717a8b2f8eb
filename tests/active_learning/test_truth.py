"""The one scenario-truth reader: contract, string ids, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from active_learning.errors import TruthFileError
from active_learning.schema import State
from active_learning.truth import BuildingTruth, load_truth


def _write(folder: Path, *, ids: tuple[str, str] = ("007", "b")) -> None:
    (folder / "scenario.json").write_text(json.dumps({"dates": ["2017-06-01", "2017-07-01"]}))
    pd.DataFrame(
        {"building_id": list(ids), "true_gap": [1, 2], "difficulty": [0.2, 0.9], "partial": [False, True]}
    ).to_csv(folder / "truth.csv", index=False)
    pd.DataFrame(
        {
            "building_id": [ids[0], ids[0], ids[1], ids[1]],
            "date_index": [0, 1, 0, 1],
            "state": ["intact", "destroyed", "intact", "intact"],
            "cloud_fraction": [0, 0, 0.9, 0],
            "visible": [True, True, False, True],
        }
    ).to_csv(folder / "truth_dates.csv", index=False)


def test_load_truth_reads_the_scenario_contract_with_string_ids(tmp_path: Path) -> None:
    _write(tmp_path)
    truth = load_truth(tmp_path)
    assert truth.true_gaps() == {"007": 1, "b": 2}  # "007" stays "007", never 7
    truths = truth.building_truths()
    assert truths[0] == BuildingTruth("007", 1, (State.INTACT, State.DESTROYED), (True, True), 0.2, False)
    assert truths[1].visible == (False, True) and truths[1].partial
    assert [d.isoformat() for d in truth.dates] == ["2017-06-01", "2017-07-01"]


def test_load_truth_names_the_file_and_the_fix(tmp_path: Path) -> None:
    _write(tmp_path)
    (tmp_path / "truth_dates.csv").write_text("building_id,date_index,state,visible\na,0,burning,True\n")
    with pytest.raises(TruthFileError, match=r"truth_dates.csv: .*burning"):
        load_truth(tmp_path)
    with pytest.raises(TruthFileError, match="not a scenario folder"):
        load_truth(tmp_path / "missing")
    _write(tmp_path)
    (tmp_path / "truth.csv").write_text("building_id,true_gap\na,1\n")
    with pytest.raises(TruthFileError, match=r"truth.csv: lacks columns \['difficulty', 'partial'\]"):
        load_truth(tmp_path)
