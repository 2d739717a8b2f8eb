"""``striketracker crowd simulate|aggregate`` on the tiny scenario, with a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from active_learning.store import Store
from experiments.scenario import generate, load_truth
from serving.cli import app


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scenario")
    generate("tiny", 2, out, progress=False)
    return out


def test_simulate_then_aggregate_stores_posteriors_decisions_and_report(
    scenario: Path, tmp_path: Path
) -> None:
    env = {"STRIKETRACKER_WORK_DIR": str(tmp_path)}
    runner = CliRunner()

    empty = runner.invoke(app, ["crowd", "aggregate"], env=env)
    assert empty.exit_code == 1 and "holds no reviews" in empty.output

    result = runner.invoke(
        app, ["crowd", "simulate", str(scenario), "--per-building", "5", "--seed", "1"], env=env
    )
    assert result.exit_code == 0, result.output
    again = runner.invoke(
        app, ["crowd", "simulate", str(scenario), "--per-building", "5", "--seed", "1"], env=env
    )
    assert "0 reviews stored" in again.output  # idempotent on external ids

    result = runner.invoke(app, ["crowd", "aggregate"], env=env)
    assert result.exit_code == 0, result.output

    store = Store.open(f"sqlite:///{tmp_path / 'striketracker.db'}")
    true_gap = load_truth(scenario).true_gaps()
    posteriors = store.latest_posteriors()
    assert set(posteriors) == set(true_gap)
    correct = sum(p.map_gap == true_gap[b] for b, p in posteriors.items())
    assert correct / len(posteriors) > 0.6  # five reviews per building: the crowd mostly dates them right
    some = next(iter(posteriors.values()))
    assert abs(sum(some.probs) - 1) < 1e-6 and some.n_reviews == 5
    dates = load_truth(scenario).dates
    for b, p in posteriors.items():
        lo, hi = p.interval
        assert lo == (dates[p.map_gap - 1] if p.map_gap >= 1 else None), b
        assert hi == (dates[p.map_gap] if p.map_gap < len(dates) else None), b
    decisions = store.decisions()
    assert len(decisions) == len(posteriors) and all(d.reason for d in decisions)

    report = pd.read_csv(tmp_path / "reports" / "volunteers.csv")
    assert {"volunteer_id", "accuracy", "accuracy_lo", "accuracy_hi", "flag"} <= set(report.columns)
    assert (tmp_path / "reports" / "volunteers.png").read_bytes()[:4] == b"\x89PNG"


def test_simulate_rejects_a_folder_without_truth(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["crowd", "simulate", str(tmp_path / "nowhere")], env={"STRIKETRACKER_WORK_DIR": str(tmp_path)}
    )
    assert result.exit_code == 1
    assert "nowhere" in result.output
