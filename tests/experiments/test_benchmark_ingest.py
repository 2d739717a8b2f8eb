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
