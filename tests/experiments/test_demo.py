"""The demo behind ``make demo`` on the tiny preset, end to end against a real Label Studio and the service."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pytest
from rich.console import Console

from active_learning.settings import Settings
from active_learning.store import Store
from experiments.demo import run_demo
from experiments.demo_services import DemoServices, free_port
from labeling import LabelStudioClient

REPO = Path(__file__).resolve().parents[2]
ENV = REPO / ".work" / "labelstudio" / "label-studio-env"
WORK = (
    REPO / ".work" / "test-demo"
)  # kept between sessions: Label Studio restarts in seconds, not a migration

KEYS = {
    "rounds", "buildings", "annotations", "annotations_via_labelstudio", "settled", "contested",
    "exact_gap_accuracy", "within1_gap_accuracy", "champion", "exports",
}  # fmt: skip


@pytest.mark.integration
def test_tiny_demo_runs_a_campaign_through_label_studio(tmp_path: Path) -> None:
    (WORK / "labelstudio").mkdir(parents=True, exist_ok=True)
    link = WORK / "labelstudio" / "label-studio-env"
    if not link.exists():
        link.symlink_to(ENV)
    settings = Settings(work_dir=WORK, label_studio_url=f"http://127.0.0.1:{free_port()}")
    DemoServices(settings, tmp_path).run(
        "labelstudio", "stop", log="stop.log"
    )  # one left by a killed session
    console = Console(file=(tmp_path / "console.txt").open("w"), width=120)

    summary = run_demo(settings, preset="tiny", seed=1, console=console, headless=True, max_rounds=4)

    root = WORK / "demo" / "tiny-1"
    written = json.loads((root / "summary.json").read_text())
    assert set(written) >= KEYS
    # every annotation went through Label Studio's API, each volunteer as their own Label Studio user
    assert written["annotations_via_labelstudio"] > 0
    assert written["annotations_via_labelstudio"] == written["annotations"]
    store = Store.open(f"sqlite:///{root / 'store.db'}")
    volunteers = {a.volunteer_id for a in store.annotations()}
    assert summary.labelstudio_users >= 3 and len(volunteers) == summary.labelstudio_users
    assert all(a.external_id.startswith("ls:") for a in store.annotations())
    assert written["rounds"] >= 2 and written["champion"] != "-"  # a first model trained on the seed batch
    assert written["settled"] > 0 and 0.0 < written["within1_gap_accuracy"] <= 1.0
    assert set(written["exports"]) == {"geojson", "gpkg", "csv"}
    assert len(gpd.read_file(written["exports"]["gpkg"])) == written["buildings"]
    for png in written["reports"]:
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # headless: the service and Label Studio are stopped at the end
    with pytest.raises(Exception):  # noqa: B017 - any connection error
        LabelStudioClient(settings.label_studio_url, "x" * 40, retries=1).whoami()


def test_demo_command_refuses_an_unknown_preset_before_doing_anything(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from serving.cli import app

    result = CliRunner().invoke(app, ["demo", "--preset", "town", "--work-dir", str(tmp_path / "work")])
    assert result.exit_code == 2
    assert "town" in result.output and "district" in result.output
    assert not (tmp_path / "work").exists()  # no scenario, no store, no service started
