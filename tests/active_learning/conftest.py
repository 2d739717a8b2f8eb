"""Tiny, seeded crowds for the active_learning tests."""

from __future__ import annotations

import pandas as pd
import pytest

from active_learning.schema import annotations_to_table, validate_table
from active_learning.truth import BuildingTruth
from active_learning.volunteers import (
    VolunteerPool,
    simulate_annotations,
    simulate_expert_annotations,
    synthetic_truths,
)

N_DATES = 8


@pytest.fixture(scope="session")
def truths() -> tuple[BuildingTruth, ...]:
    return synthetic_truths(240, N_DATES, seed=7)


@pytest.fixture(scope="session")
def pool() -> VolunteerPool:
    return VolunteerPool.create(40, seed=7)


@pytest.fixture(scope="session")
def crowd_table(truths: tuple[BuildingTruth, ...], pool: VolunteerPool) -> pd.DataFrame:
    """Three reviews per building plus gold on the first 20 buildings, validated."""
    annotations = simulate_annotations(truths, pool, 3, seed=7) + simulate_expert_annotations(
        truths[:20], seed=7
    )
    return validate_table(annotations_to_table(annotations), n_dates=N_DATES, strict=True).table
