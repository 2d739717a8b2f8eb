"""Dating metrics and their plots."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from model.calibration import (
    auc_score,
    dating_metrics,
    expected_calibration_error,
    plot_gap_errors,
    plot_reliability,
    shrink_temperature,
)

DATES = tuple(dt.date(2017, 1, 1) + dt.timedelta(days=10 * t) for t in range(4))


def test_auc_matches_pairwise_definition(rng: np.random.Generator) -> None:
    score = rng.integers(0, 5, size=30).astype(float)
    positive = rng.random(30) < 0.4
    pairs = [
        1.0 if a > b else 0.5 if a == b else 0.0
        for (a, pa), (b, pb) in itertools.product(zip(score, positive, strict=False), repeat=2)
        if pa and not pb
    ]
    assert auc_score(score, positive) == pytest.approx(np.mean(pairs))


def test_ece_is_zero_when_confidence_matches_accuracy() -> None:
    confidence = np.array([0.5] * 4 + [1.0] * 3)
    correct = np.array([1, 0, 1, 0, 1, 1, 1])
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.0)
    assert expected_calibration_error(np.array([0.9, 0.9]), np.array([0, 0])) == pytest.approx(0.9)


def test_perfect_posterior_scores_perfectly() -> None:
    gaps = np.array([0, 1, 2, 4, 4])
    probs = np.eye(5)[gaps]
    m = dating_metrics(probs, gaps, DATES)
    assert (m.exact_gap_accuracy, m.within1_gap_accuracy, m.auc, m.ece) == (1.0, 1.0, 1.0, 0.0)
    # gap 1 spans 2017-01-01..01-11 (10 days); gap 0 and gap 4 are clipped to the first / last date.
    assert m.ci90_width_days == pytest.approx(np.mean([0, 10, 10, 0, 0]))


def test_plots_are_written(tmp_path: Path, rng: np.random.Generator) -> None:
    probs = rng.dirichlet(np.ones(5), size=20)
    gaps = rng.integers(0, 5, size=20)
    assert plot_reliability(probs, gaps, tmp_path / "r.png").stat().st_size > 1000
    assert plot_gap_errors(probs, gaps, tmp_path / "e.png").stat().st_size > 1000


def test_reported_gap_calls_likely_but_spread_damage_damaged() -> None:
    from model.calibration import reported_gap

    probs = np.array(
        [
            [0.2, 0.2, 0.2, 0.4],  # damage 0.6 spread over gaps: MAP says intact, reported: damaged at gap 0
            [0.1, 0.1, 0.2, 0.6],  # damage 0.4: intact
            [0.05, 0.7, 0.05, 0.2],  # clear: gap 1
            [0.0, 0.0, 0.5, 0.5],  # a tie at one half counts as damaged
        ]
    )
    assert list(reported_gap(probs)) == [0, 3, 1, 2]
    assert list(probs.argmax(axis=1)) == [3, 3, 1, 2]
    metrics = dating_metrics(probs, np.array([0, 3, 1, 2]), [dt.date(2017, 1, d) for d in (1, 2, 3)])
    assert metrics.exact_gap_accuracy == 1.0


def test_temperature_fit_finds_the_global_minimum_with_floored_soft_labels() -> None:
    from model.calibration import fit_temperature, gap_nll
    from model.changepoint import gap_posterior

    gen = torch.Generator().manual_seed(3)
    n, g = 600, 8
    loglik = 6.0 * torch.randn(n, g, generator=gen, dtype=torch.float64)
    agree = torch.rand(n, generator=gen) < 0.85  # the crowd agrees with the network's MAP 85% of the time
    mode = torch.where(agree, loglik.argmax(dim=1), torch.randint(0, g, (n,), generator=gen))
    target = 0.9 * torch.nn.functional.one_hot(mode, g).double() + 0.1 / g  # a 0.1 noise floor
    interval = torch.zeros(n, dtype=torch.bool)

    def nll(t: float) -> float:
        return float(gap_nll(gap_posterior(loglik / t), target, interval).mean())

    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 400))
    brute = min(nll(float(t)) for t in grid)
    fitted = fit_temperature(loglik, target, interval)
    assert nll(fitted) <= brute + 1e-4


def test_shrunk_temperature_needs_many_validation_buildings_to_move_far_from_one() -> None:
    assert shrink_temperature(1.4, 150, 1000.0) == pytest.approx(1.4 ** (150 / 1150))
    assert 1.0 < shrink_temperature(1.4, 150, 1000.0) < shrink_temperature(1.4, 5000, 1000.0) < 1.4
    assert shrink_temperature(0.7, 5000, 1000.0) == pytest.approx(0.7 ** (5 / 6))
    assert shrink_temperature(1.4, 150, 0.0) == pytest.approx(1.4)  # no prior: the fit as it is
    assert shrink_temperature(1.4, 0, 1000.0) == 1.0
    with pytest.raises(ValueError, match="prior_buildings must be >= 0"):
        shrink_temperature(1.4, 150, -1.0)


def test_tempered_log_posterior_is_the_monte_carlo_mean_of_tempered_posteriors() -> None:
    from model.calibration import tempered_log_posterior
    from model.changepoint import gap_posterior

    gen = torch.Generator().manual_seed(5)
    loglik = torch.randn(3, 4, 6, generator=gen, dtype=torch.float64) * 3
    mean = gap_posterior(loglik / 2.0).exp().mean(dim=0)
    torch.testing.assert_close(tempered_log_posterior(loglik, 2.0).exp(), mean)
    torch.testing.assert_close(tempered_log_posterior(loglik[0], 2.0), gap_posterior(loglik[0] / 2.0))
