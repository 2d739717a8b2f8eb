"""The interval-answers benchmark pools seeds, pairs its arms on the same reviews and splits by adversaries."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from rich.console import Console

from active_learning.volunteers import VolunteerPool, simulate_annotations, synthetic_truths
from experiments.benchmarks import interval_answers
from experiments.benchmarks.aggregation import interval_answers as reduce_to_intervals
from experiments.benchmarks.aggregation import interval_verdict
from labeling import compact_answer


def first_damaged(annotation) -> int | None:
    return compact_answer([s.label for s in annotation.states]).first_damaged


def test_native_compact_answers_are_the_perceived_interval_up_to_one_misclick() -> None:
    truths = synthetic_truths(200, 10, seed=1)
    pool = VolunteerPool.create(30, seed=2)
    perceived = simulate_annotations(truths, pool, 3, seed=3, slips=False)
    native = interval_answers.native_compact(perceived, pool, seed=3)
    reduced = reduce_to_intervals(perceived)
    moved = 0
    for a, b in zip(native, reduced, strict=True):
        fa, fb = first_damaged(a), first_damaged(b)
        assert (fa is None) == (fb is None)
        if fa is not None and fb is not None:
            assert abs(fa - fb) <= 1
            moved += fa != fb
    assert 0 < moved < len(native) / 5  # a misclick now and then, near the slip rate at the change
    # a misclick-free pool gives exactly the reduction of what it perceived
    careful = replace(
        pool, volunteers=tuple(replace(v, profile=replace(v.profile, slip_rate=0.0)) for v in pool.volunteers)
    )
    assert interval_answers.native_compact(perceived, careful, seed=3) == reduce_to_intervals(perceived)


def test_a_tiny_run_pools_the_seeds_and_gives_a_verdict_per_crowd_and_arm(monkeypatch, tmp_path) -> None:
    def truths(preset, seed, console):
        return list(synthetic_truths(120, 8, seed=seed)), "synthetic"

    monkeypatch.setattr(interval_answers, "_truths", truths)
    figures = interval_answers.run("tiny", [0, 1], console=Console(quiet=True))
    for crowd in interval_answers.CROWDS:
        for arm in interval_answers.ARMS:
            key = f"{crowd}_{arm}"
            diff = figures[f"{key}_difference"]
            assert diff == figures[f"{key}_accuracy"] - figures[f"{key}_per_date"]
            assert figures[f"{key}_difference_ci90_lo"] <= diff <= figures[f"{key}_difference_ci90_hi"]
            assert figures[f"{key}_verdict"] == interval_verdict(
                diff, figures[f"{key}_difference_ci90_lo"], figures[f"{key}_difference_ci90_hi"]
            )
            per_seed = [figures[f"seed{s}_{crowd}_{arm}_difference"] for s in (0, 1)]
            assert np.isclose(np.mean(per_seed), diff)  # equal-sized seeds: the pool is their mean
            assert figures[f"{key}_buildings"] == 2 * (120 - 6)  # 5% gold left out of each seed
    # with 20% bad volunteers some buildings have an adversarial reviewer, and the split adds up
    honest, bad = (
        figures["adversarial_interval_honest_only_buildings"],
        figures["adversarial_interval_with_adversarial_buildings"],
    )
    assert bad > 0 and honest + bad == figures["adversarial_interval_buildings"]
    png = interval_answers.plot(figures, [0, 1], tmp_path / "interval.png")
    assert png.stat().st_size > 10_000
    assert interval_answers.summary(figures).count("\n") >= 2 * 3 - 1
