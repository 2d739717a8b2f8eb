"""Shared test configuration: seeded randomness and a deterministic Hypothesis profile."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
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


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one CPU thread for the test (training tests: steadier timing on the shared 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
