"""An export killed with SIGKILL just before its rename leaves the previous export whole under the final name, and
the rerun writes the new one (``serving/export.py`` writes to a temporary name, then ``os.replace``)."""

from __future__ import annotations

from pathlib import Path

import pyogrio
import pytest

from serving.export import LAYER, write_export
from tests.resilience.child import spawn
from tests.resilience.test_disk_full import _frame

pytestmark = pytest.mark.integration


def test_an_export_killed_before_its_rename_leaves_the_previous_one_and_the_rerun_replaces_it(
    tmp_path: Path,
) -> None:
    frame = tmp_path / "frame.geojson"
    _frame(500).to_file(frame)
    out = tmp_path / "exports" / "dated.gpkg"
    write_export(_frame(10), out, "gpkg")
    killed = spawn("tests.resilience.jobs:export", frame, out, "gpkg", kill_at="os:replace")
    assert killed.returncode == -9, killed.stderr[-2000:]
    parts = [p for p in out.parent.iterdir() if p != out]
    assert [p.name.startswith(".dated.") and ".part" in p.name for p in parts] == [True]  # the dead write
    assert len(pyogrio.read_dataframe(out, layer=LAYER)) == 10  # the previous export, whole
    write_export(_frame(500), out, "gpkg")
    assert len(pyogrio.read_dataframe(out, layer=LAYER)) == 500
