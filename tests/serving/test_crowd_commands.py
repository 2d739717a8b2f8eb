"""``striketracker crowd simulate|aggregate`` on the tiny scenario, with a real SQLite or PostgreSQL store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from active_learning.aggregation import GapDawidSkene, PerDateDawidSkene
from active_learning.store import PosteriorRow, RoundRow, Store
from experiments.scenario import generate, load_truth
from serving.cli import app
from serving.commands.crowd import AGGREGATOR_LABEL_MAX, aggregator_label


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


def test_aggregate_stores_a_short_aggregator_label_on_both_backends(
    scenario: Path, tmp_path: Path, store_url: str
) -> None:
    # PostgreSQL enforces the 256 characters of posteriors.aggregator that SQLite ignores: the full repr of
    # the aggregator (over 300 characters) made the command fail there
    env = {"STRIKETRACKER_WORK_DIR": str(tmp_path), "STRIKETRACKER_DATABASE_URL": store_url}
    runner = CliRunner()
    result = runner.invoke(app, ["crowd", "simulate", str(scenario), "--per-building", "3"], env=env)
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["crowd", "aggregate"], env=env)
    assert result.exit_code == 0, result.output

    store = Store.open(store_url)
    assert set(store.latest_posteriors()) == set(load_truth(scenario).true_gaps())
    with Session(store.engine) as session:
        labels = set(session.scalars(select(PosteriorRow.aggregator)))
        params: dict[str, Any] = session.scalars(
            select(RoundRow.params).where(RoundRow.kind == "aggregation")
        ).one()
    assert labels == {"GapDawidSkene"}
    assert params["aggregator_label"] == "GapDawidSkene"
    assert params["aggregator"] == repr(GapDawidSkene())  # the round keeps the full settings


def test_aggregator_label_names_the_class_and_only_the_changed_settings() -> None:
    assert aggregator_label(GapDawidSkene()) == "GapDawidSkene"
    assert aggregator_label(PerDateDawidSkene()) == "PerDateDawidSkene"
    assert (
        aggregator_label(GapDawidSkene(difficulty_levels=2, inversion=True))
        == "GapDawidSkene(difficulty_levels=2, inversion=True)"
    )


def test_an_aggregator_label_too_long_to_spell_out_is_a_stable_hash_of_the_full_repr() -> None:
    def crowded(model_weight: float) -> GapDawidSkene:
        return GapDawidSkene(
            n_iter=7, tol=1e-3, confusion_prior=3.5, pooled_prior=1.5, gap_prior_strength=0.5,
            init_accuracy=0.7, model_weight=model_weight, use_gold=False, max_shift=2, kernel_prior=4.0,
            difficulty_levels=2, inversion=True,
        )  # fmt: skip

    label = aggregator_label(crowded(0.3))
    assert label.startswith("GapDawidSkene#") and len(label) <= AGGREGATOR_LABEL_MAX
    assert aggregator_label(crowded(0.3)) == label  # the same settings, the same label
    assert aggregator_label(crowded(0.4)) != label
