"""An export killed with SIGKILL just before its rename leaves the previous export whole under the final name, and
the rerun writes the new one and clears the killed export's temporary (``serving/export.py`` writes to a temporary
name carrying its writer's host and pid, then ``os.replace``); a live writer's temporary is left alone."""

from __future__ import annotations

from pathlib import Path

import pyogrio
import pytest

from model.temporaries import writer_tag
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
    assert (
        pyogrio.read_info(parts[0], layer=LAYER)["features"] == 500
    )  # whole, but never taken for the export
    assert len(pyogrio.read_dataframe(out, layer=LAYER)) == 10  # the previous export, whole
    live = out.parent / f".dated.{writer_tag()}.part.gpkg"  # this test process: a writer still running
    live.write_bytes(b"being written")
    elsewhere = out.parent / ".dated.other-host-1-0123abcd.part.gpkg"  # a writer on another machine
    elsewhere.write_bytes(b"being written")
    write_export(_frame(500), out, "gpkg")
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([out.name, live.name, elsewhere.name])
    assert len(pyogrio.read_dataframe(out, layer=LAYER)) == 500
    assert live.read_bytes() == elsewhere.read_bytes() == b"being written"


def test_a_csv_export_killed_before_its_renames_leaves_no_temporary_after_the_rerun(tmp_path: Path) -> None:
    frame = tmp_path / "frame.geojson"
    _frame(50).to_file(frame)
    out = tmp_path / "exports" / "dated.csv"
    killed = spawn("tests.resilience.jobs:export", frame, out, "csv", kill_at="os:replace")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not out.exists()
    assert len(list(out.parent.glob(".dated.*.part*"))) >= 2  # the table and its sidecars, none renamed
    write_export(_frame(50), out, "csv")
    assert sorted(p.name for p in out.parent.iterdir()) == ["dated.csv", "dated.csvt", "dated.prj"]
    assert len(pyogrio.read_dataframe(out)) == 50
