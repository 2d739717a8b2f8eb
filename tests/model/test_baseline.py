"""The non-learned change-point baseline."""

from __future__ import annotations

import numpy as np

from model.baseline import ChangePointBaseline
from tests.model.dating_data import synthetic_chips


def test_baseline_finds_clear_changes(rng: np.random.Generator) -> None:
    arrays, gaps = synthetic_chips(rng, n=40, n_dates=6, size=16, cloud_rate=0.0)
    probs = ChangePointBaseline().predict(arrays)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    inner = (gaps > 0) & (gaps < 6)
    assert (probs.argmax(axis=1)[inner] == gaps[inner]).mean() >= 0.9
    strict = ChangePointBaseline(penalty_scale=2.0).predict(arrays)
    assert (strict.argmax(axis=1)[gaps == 6] == 6).all()
    assert (strict.argmax(axis=1)[inner] == gaps[inner]).mean() >= 0.9


def test_unobserved_dates_carry_no_evidence(rng: np.random.Generator) -> None:
    arrays, _ = synthetic_chips(rng, n=6, n_dates=5, size=16, cloud_rate=0.0)
    baseline = ChangePointBaseline()
    stats = baseline.statistics(arrays.chips, arrays.mask)
    observed = np.ones((6, 5), dtype=bool)
    observed[:, 2] = False
    a = baseline.log_likelihood(stats, observed)
    stats[:, 2] += 100.0
    b = baseline.log_likelihood(stats, observed)
    np.testing.assert_allclose(a, b)


def test_illumination_gain_barely_moves_the_statistics(rng: np.random.Generator) -> None:
    arrays, _ = synthetic_chips(rng, n=3, n_dates=2, size=16, cloud_rate=0.0)
    textured = np.clip(arrays.chips + rng.normal(0, 25, size=arrays.chips.shape), 0, 255).round()
    baseline = ChangePointBaseline()
    darker = np.round(textured * 0.8).astype(np.uint8)
    np.testing.assert_allclose(
        baseline.statistics(textured.astype(np.uint8), arrays.mask),
        baseline.statistics(darker, arrays.mask),
        atol=0.05,
    )
