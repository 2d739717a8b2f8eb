"""The ingest benchmark runs on the tiny preset and reports the figures the issue names."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.benchmarks import ingest


def test_tiny_ingest_benchmark_reports_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "ingest.json"
    figures = ingest.main(
        ["--preset", "tiny", "--seed", "0", "--json", str(out), "--no-mlflow", "--subset", "20"]
    )
    written = json.loads(out.read_text())
    for key in ("buildings", "dates", "chips", "seconds", "chips_per_s", "peak_rss_mb"):
        assert key in written, key
    assert written["chips"] == written["buildings"] * written["dates"] > 0
    assert figures["chips_per_s"] > 0 and figures["peak_rss_mb"] > 0
    assert figures["tiled_vs_per_building_max_abs_diff"] <= 1  # the two read strategies cut the same chips
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_folder_lock_serialises_processes_on_the_same_folder(tmp_path: Path) -> None:
    import multiprocessing

    from experiments.benchmarks.ingest import folder_lock

    folder = tmp_path / "scenarios" / "district-4"
    log = tmp_path / "log.txt"
    ctx = multiprocessing.get_context("spawn")
    with folder_lock(folder):
        other = ctx.Process(target=_append_under_lock, args=(folder, log))
        other.start()
        other.join(timeout=2.0)
        assert other.is_alive()  # it waits for the lock
        log.write_text("first\n")
    other.join(timeout=30)
    assert other.exitcode == 0
    assert log.read_text() == "first\nsecond\n"


def _append_under_lock(folder: Path, log: Path) -> None:
    from experiments.benchmarks.ingest import folder_lock

    with folder_lock(folder), log.open("a") as handle:
        handle.write("second\n")
