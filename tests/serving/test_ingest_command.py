"""`striketracker ingest`: builds a cache, reuses it, and turns bad input into a clear message and exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serving.cli import app
from tests.model.conftest import X0, Y0, Scene, square, write_footprints, write_scene


@pytest.fixture
def scene(tmp_path: Path) -> Scene:
    return write_scene(tmp_path / "scene")


def test_ingest_builds_then_reuses(scene: Scene, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["ingest", str(scene.imagery), str(scene.footprints), "--out", str(tmp_path / "cache")]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["buildings"] == 4 and summary["dates"] == 3 and summary["built"] is True
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and json.loads(again.stdout.strip().splitlines()[-1])["built"] is False
    assert (tmp_path / "cache" / "chips.u8").is_file()
    # the cache's co-registration is estimated with it and reported (one [rows, cols] shift per date)
    assert len(summary["registration_px"]) == 3 and (tmp_path / "cache" / "registration.json").is_file()
    assert "co-registration: dates shifted by up to" in first.output


def test_ingest_reports_rejects_and_fatal_errors(scene: Scene, tmp_path: Path) -> None:
    footprints = write_footprints(
        tmp_path / "fp.gpkg", ["B1", "FAR"], [square(X0 + 20, Y0 - 20, 4), square(X0 + 9000, Y0, 4)]
    )
    runner = CliRunner()
    partly = runner.invoke(
        app, ["ingest", str(scene.imagery), str(footprints), "--out", str(tmp_path / "c1")]
    )
    assert partly.exit_code == 0
    assert "fp.gpkg: 1 building lies outside every image (id FAR); check the CRS" in partly.output
    missing = runner.invoke(app, ["ingest", str(scene.imagery), str(tmp_path / "nope.gpkg"), "--out", "x"])
    assert missing.exit_code == 1
    assert "nope.gpkg: the footprint file does not exist" in missing.output
