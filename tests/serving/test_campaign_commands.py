"""``striketracker campaign init|round|run|status|unlock`` over a tiny chip cache and the simulated pool."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from active_learning.store import Store
from active_learning.volunteers import synthetic_truths
from serving.cli import app
from tests.labeling.chip_cache import write_chip_cache


def _scenario(folder: Path, ids: tuple[str, ...], dates: tuple[str, ...]) -> Path:
    """A scenario folder's truth files for the chip cache's buildings (docs/CONTRACTS.md)."""
    folder.mkdir(parents=True)
    truths = synthetic_truths(len(ids), len(dates), seed=3)
    (folder / "scenario.json").write_text(json.dumps({"preset": "test", "seed": 3, "dates": list(dates)}))
    pd.DataFrame(
        {"building_id": ids, "true_gap": [t.true_gap for t in truths], "difficulty": [t.difficulty for t in truths],
         "partial": [t.partial for t in truths]}
    ).to_csv(folder / "truth.csv", index=False)  # fmt: skip
    rows = [
        {"building_id": b, "date_index": i, "state": s.label, "cloud_fraction": 0.0, "visible": v}
        for b, t in zip(ids, truths, strict=True)
        for i, (s, v) in enumerate(zip(t.states, t.visible, strict=True))
    ]
    pd.DataFrame(rows).to_csv(folder / "truth_dates.csv", index=False)
    return folder


def test_init_round_run_status_unlock(tmp_path: Path) -> None:
    ids, dates = write_chip_cache(tmp_path / "chips", n_buildings=16, n_dates=5)
    scenario = _scenario(tmp_path / "scenario", ids, dates)
    env = {"STRIKETRACKER_WORK_DIR": str(tmp_path / "work")}
    runner = CliRunner()
    init = ["campaign", "init", "--name", "c1", "--cache", str(tmp_path / "chips"), "--scenario", str(scenario),
            "--no-model", "--batch-size", "4", "--seed-size", "6"]  # fmt: skip
    result = runner.invoke(app, init, env=env)
    assert result.exit_code == 0, result.output
    assert "16 buildings (16 new)" in result.output

    result = runner.invoke(app, ["campaign", "round", "--name", "c1"], env=env)
    assert result.exit_code == 0, result.output
    assert "requested this round" in result.output

    result = runner.invoke(app, ["campaign", "run", "--name", "c1", "--rounds", "3"], env=env)
    assert result.exit_code == 0, result.output
    store = Store.open(f"sqlite:///{tmp_path / 'work' / 'striketracker.db'}")
    assert len([r for r in store.rounds("c1") if r.finished_at]) == 4
    assert store.annotation_count() > 6  # the simulated platform kept its tasks between the processes
    assert (tmp_path / "work" / "campaigns" / "c1" / "simulated-platform.json").exists()

    result = runner.invoke(app, ["campaign", "status", "--name", "c1"], env=env)
    assert result.exit_code == 0 and "rounds finished" in result.output and "lock" in result.output

    store.try_lock("c1", "someone", 1, "elsewhere")  # a loop process on another host
    result = runner.invoke(app, ["campaign", "round", "--name", "c1"], env=env)
    assert result.exit_code == 1 and "another loop process" in result.output
    result = runner.invoke(app, ["campaign", "unlock", "--name", "c1"], env=env)
    assert result.exit_code == 0 and store.lock("c1") is None

    # any labeler named by import path: here the crowd whose errors do not follow the aggregator's model
    other = [*init[:3], "c3", *init[4:], "--labeler", "experiments.benchmarks.crowds:independent_errors"]
    assert runner.invoke(app, other, env=env).exit_code == 0
    result = runner.invoke(app, ["campaign", "round", "--name", "c3"], env=env)
    assert result.exit_code == 0, result.output
    assert (
        Store.open(f"sqlite:///{tmp_path / 'work' / 'striketracker.db'}")
        .campaign("c3")
        .labeler.endswith(":independent_errors")
    )

    bad = runner.invoke(app, [*init[:3], "c2", *init[4:], "--mode", "guess"], env=env)
    assert bad.exit_code == 1 and "mode 'guess' is not one of" in bad.output
    missing = runner.invoke(app, ["campaign", "status", "--name", "nope"], env=env)
    assert missing.exit_code == 1 and "campaign init" in missing.output
