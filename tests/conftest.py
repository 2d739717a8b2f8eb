"""Shared test configuration: seeded randomness and a deterministic Hypothesis profile."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import settings

# Real services for any test package: one Label Studio server per session and the striketracker service on
# loopback (tests.live_services); one PostgreSQL server per session and a store URL per backend (tests.postgres).
pytest_plugins = ("tests.live_services", "tests.postgres")

# Derandomised so a run never depends on luck; no deadline because the 2-core CI machine is shared.
settings.register_profile("striketracker", deadline=None, derandomize=True, max_examples=60)
settings.load_profile("striketracker")


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator; every test that draws random data uses it."""
    return np.random.default_rng(12345)
