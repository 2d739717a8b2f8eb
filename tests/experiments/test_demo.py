"""The demo behind `make demo`, on the tiny preset."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from experiments.demo import run_demo


def test_demo_generates_ingests_and_reports(tmp_path: Path) -> None:
    console = Console(file=open("/dev/null", "w"))  # noqa: SIM115 - silent console for the test
    summary = run_demo(tmp_path, preset="tiny", seed=3, console=console)

    assert summary.buildings > 20
    assert summary.dates == 15
    assert summary.chips == summary.buildings * summary.dates
    assert 0 < summary.damaged_buildings < summary.buildings
    for png in (summary.preview_png, summary.chips_png):
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert written["buildings"] == summary.buildings

    # A second run reuses the scenario and the chip cache: the cache files are not rewritten.
    chips = Path(summary.chip_cache) / "chips.u8"
    before = chips.stat().st_mtime_ns
    again = run_demo(tmp_path, preset="tiny", seed=3, console=console)
    assert again.buildings == summary.buildings
    assert chips.stat().st_mtime_ns == before
