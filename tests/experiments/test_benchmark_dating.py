"""The dating benchmark's multi-seed summary."""

from __future__ import annotations

from typing import Any

import pytest

from experiments.benchmarks.dating import SUMMARY_KEYS, summarise


def _figures(seed: int, **over: float) -> dict[str, Any]:
    base: dict[str, Any] = {key: 0.5 for key in SUMMARY_KEYS}
    base.update(
        preset="district",
        seed=seed,
        eval_seed=seed + 1,
        exact_gap_accuracy=0.95,
        within1_gap_accuracy=0.98,
        auc=0.99,
        ece=0.01,
        exact_gain_over_baseline=0.4,
        inference_chips_per_s=1500.0,
        train_epoch_s=2.0,
    )
    base.update(over)
    return base


def test_summary_gives_means_worst_seeds_and_the_verdict() -> None:
    runs = [
        _figures(0, ci90_width_days=20.0),
        _figures(1, within1_gap_accuracy=0.96, ece=0.05, train_epoch_s=4.0, ci90_width_days=25.0),
    ]
    summary = summarise(runs)
    assert summary["seeds"] == [0, 1]
    assert summary["within1_gap_accuracy"] == pytest.approx(0.97)
    assert summary["worst_within1_gap_accuracy"] == pytest.approx(0.96)  # the lower one
    assert summary["worst_ece"] == pytest.approx(0.05)  # the higher one
    assert summary["worst_train_epoch_s"] == pytest.approx(4.0)
    assert summary["worst_ci90_width_days"] == pytest.approx(25.0)  # the wider interval
    assert (
        summary["targets_met_every_seed"] is False
    )  # seed 1 misses within-1 and ECE, although the mean meets
    assert summary["per_seed"] == runs
    assert summarise([_figures(0), _figures(1)])["targets_met_every_seed"] is True
