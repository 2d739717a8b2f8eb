"""Acquisition: scoring functions by name, expected information gain, batches with spatial spread and an audit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from active_learning.acquisition import (
    ACQUISITIONS,
    AcquisitionInputs,
    default_channel,
    expected_information_gain,
    get_acquisition,
    review_channel,
    score,
    select_batch,
)
from active_learning.aggregation import GapDawidSkene
from active_learning.errors import AcquisitionError
from tests.active_learning.conftest import N_DATES


def test_scoring_functions_are_chosen_by_name(rng: np.random.Generator) -> None:
    assert {"random", "entropy", "bald", "eig"} <= set(ACQUISITIONS)
    with pytest.raises(AcquisitionError, match="unknown acquisition 'magic'.*eig"):
        get_acquisition("magic")
    probs = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    inputs = AcquisitionInputs(("sure", "unsure"), probs, bald=np.array([0.0, 0.4]))
    for name in ("entropy", "bald", "eig"):
        s = score(name, inputs, rng)
        assert s[1] > s[0], name
    with pytest.raises(AcquisitionError, match="needs the model"):
        score("bald", AcquisitionInputs(("a",), probs[:1]), rng)


def test_eig_is_the_mutual_information_of_gap_and_review() -> None:
    q = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    perfect = np.eye(3)
    useless = np.full((3, 3), 1 / 3)
    eig = expected_information_gain(q, perfect)
    assert eig[0] == pytest.approx(np.log(2)) and eig[1] == pytest.approx(0.0)  # a perfect review reveals g
    assert expected_information_gain(q, useless) == pytest.approx(np.zeros(3))  # noise reveals nothing
    noisy = default_channel(2)
    assert 0.0 < expected_information_gain(q, noisy)[0] < np.log(2)


@given(st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4).filter(lambda p: sum(p) > 0.01))
def test_eig_never_exceeds_the_posterior_entropy(p: list[float]) -> None:
    q = np.array([p]) / sum(p)
    entropy = -(q[q > 0] * np.log(q[q > 0])).sum()
    assert 0.0 <= expected_information_gain(q, default_channel(3))[0] <= entropy + 1e-9


def test_the_review_channel_is_learned_from_the_fit(crowd_table) -> None:
    fit = GapDawidSkene().fit(crowd_table, N_DATES)
    channel = review_channel(fit, crowd_table)
    assert channel.shape == (N_DATES + 1, N_DATES + 1)
    assert np.allclose(channel.sum(axis=1), 1.0)
    assert (np.diag(channel) > 0.5).mean() > 0.8  # most reviews report the true gap
    assert channel[N_DATES, N_DATES] > 0.8  # undamaged buildings are reported undamaged


def test_batches_carry_ids_spread_over_blocks_and_keep_a_random_share(rng: np.random.Generator) -> None:
    ids = [f"b{i:02d}" for i in range(40)]
    scores = np.linspace(1.0, 0.0, 40)
    blocks = ["hot"] * 20 + [f"cold{i % 5}" for i in range(20)]  # the best 20 crowd into one block
    batch = select_batch(ids, scores, 10, rng, blocks=blocks, block_share=0.2, random_share=0.2)
    assert len(batch) == 10 and len({s.building_id for s in batch}) == 10
    assert sum(s.kind == "audit" for s in batch) == 2
    acquired = [s for s in batch if s.kind == "acquired"]
    assert sum(blocks[ids.index(s.building_id)] == "hot" for s in acquired) <= 2
    assert all(s.score == pytest.approx(scores[ids.index(s.building_id)]) for s in batch)  # ids, not rows
    assert [s.rank for s in batch] == list(range(10))
    # too few blocks to respect the cap: the batch is still filled with the best of the rest
    full = select_batch(ids[:5], scores[:5], 5, rng, blocks=["one"] * 5, block_share=0.2)
    assert [s.building_id for s in full] == ids[:5]
    with pytest.raises(AcquisitionError, match="random_share"):
        select_batch(ids, scores, 5, rng, random_share=1.5)
