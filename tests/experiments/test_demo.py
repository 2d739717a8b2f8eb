"""The demo behind `make demo`, on the tiny preset: scenario to dated buildings, through MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from rich.console import Console

from active_learning.settings import Settings
from experiments.demo import run_demo
from model.registry import model_ref


def test_demo_runs_from_scenario_to_dated_buildings_and_reuses_its_caches(tmp_path: Path) -> None:
    console = Console(file=open("/dev/null", "w"))  # noqa: SIM115 - silent console for the test
    tracking = Settings(work_dir=tmp_path).tracking()
    summary = run_demo(tmp_path, preset="tiny", seed=3, console=console, tracking=tracking, max_epochs=20)

    assert summary.buildings > 20
    assert summary.dates == 15
    assert summary.chips == summary.buildings * summary.dates
    assert 0 < summary.damaged_buildings < summary.buildings
    for png in (summary.preview_png, summary.chips_png, summary.timeline_png):
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert written["buildings"] == summary.buildings

    # the first model is the first champion; every building is dated by it, with its version and the data
    assert summary.promoted and summary.champion == summary.candidate
    assert model_ref(tracking, "champion").label == summary.champion
    table = pd.read_csv(Path(summary.posteriors_dir) / "posteriors.csv", dtype={"building_id": str})
    meta = json.loads((Path(summary.posteriors_dir) / "meta.json").read_text())
    assert len(table) == summary.buildings and set(table["model_version"]) == {summary.champion}
    assert (
        meta["model_version"] == summary.champion and meta["data_fingerprint"] == table["data_fingerprint"][0]
    )
    # the audit set is every building nobody labelled; the model is scored there, far above chance
    labels = pd.read_csv(tmp_path / "demo" / "labels.csv", dtype={"building_id": str})
    audit = pd.read_csv(tmp_path / "demo" / "audit_truth.csv", dtype={"building_id": str})
    assert len(labels) == summary.labelled_buildings and len(labels) + len(audit) == summary.buildings
    assert not set(labels["building_id"]) & set(audit["building_id"])
    assert summary.within1_gap_accuracy > 0.5

    # A second run reuses the scenario and the chip cache (not rewritten), trains a new candidate and lets the
    # audit decide whether it replaces the champion.
    chips = Path(summary.chip_cache) / "chips.u8"
    before = chips.stat().st_mtime_ns
    again = run_demo(tmp_path, preset="tiny", seed=3, console=console, tracking=tracking, max_epochs=2)
    assert again.buildings == summary.buildings
    assert chips.stat().st_mtime_ns == before
    assert again.candidate != summary.candidate
    assert again.champion == (again.candidate if again.promoted else summary.champion)
    assert again.promotion_reason


def test_demo_command_refuses_zero_epochs_before_doing_anything(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from serving.cli import app

    result = CliRunner().invoke(app, ["demo", "--max-epochs", "0", "--work-dir", str(tmp_path / "work")])
    assert result.exit_code == 2
    assert "--max-epochs" in result.output
    assert not (tmp_path / "work").exists()  # no scenario, no chips, no MLflow store
