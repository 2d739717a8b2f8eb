"""Pre/post change features and the change classifier (model.change_features), on tiny generated chips."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from model.change_features import (
    C_GRID,
    DEFAULT_C,
    FOOTPRINT_FEATURES,
    ChangeClassifier,
    building_change_features,
    feature_names,
    gap_probabilities,
)
from model.datamodule import ChipArrays
from model.errors import ModelConfigError

SIZE = 32


def make_chips(rng: np.random.Generator, n: int, damaged: np.ndarray) -> ChipArrays:
    """Textured houses on a smooth ground; a damaged house's footprint is new noise after the event."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    mask = np.zeros((n, SIZE, SIZE), dtype=np.uint8)
    mask[:, 10:22, 10:22] = 255
    chips = np.zeros((n, 2, 3, SIZE, SIZE), dtype=np.uint8)
    for i in range(n):
        ground = 90 + 30 * np.sin(xx / 5.0 + i) * np.cos(yy / 7.0)
        roof = 170 + 20 * ((xx // 3 + yy // 3) % 2)
        pre = np.where(mask[i] > 0, roof, ground)
        post = pre.copy()
        if damaged[i]:
            post = np.where(mask[i] > 0, rng.integers(40, 220, (SIZE, SIZE)), ground)
        gain = rng.uniform(0.8, 1.2)  # each date's radiometry differs: the features must not care
        chips[i, 0] = np.clip(pre, 0, 255)[None]
        chips[i, 1] = np.clip(gain * post + rng.normal(0, 3, (SIZE, SIZE)), 0, 255)[None]
    return ChipArrays(
        building_ids=tuple(f"b{i}" for i in range(n)),
        dates=(dt.date(2020, 1, 1), dt.date(2020, 6, 1)),
        chips=chips,
        mask=mask,
        valid=np.ones((n, 2), dtype=np.float32),
    )


def test_features_have_their_named_columns_and_separate_damaged_from_intact(rng: np.random.Generator) -> None:
    damaged = np.arange(24) % 2 == 0
    chips = make_chips(rng, 24, damaged)
    x = building_change_features(chips, np.arange(24), batch_size=7)  # batches must not change anything
    names = feature_names()
    assert x.shape == (24, len(names)) and np.isfinite(x).all()
    for name in ("footprint_dissimilarity", "footprint_decorrelation"):
        column = x[:, names.index(name)]
        assert column[damaged].min() > column[~damaged].max(), name


def test_the_classifier_learns_damage_from_the_footprint_features(rng: np.random.Generator) -> None:
    damaged = rng.random(60) < 0.7
    damaged[:2] = (True, False)
    chips = make_chips(rng, 60, damaged)
    x = building_change_features(chips, np.arange(60))
    columns = tuple(feature_names().index(n) for n in FOOTPRINT_FEATURES)
    clf = ChangeClassifier(columns=columns).fit(x[:40], damaged[:40])
    p = clf.predict_damaged(x[40:])
    assert p.shape == (20,) and ((p > 0.5) == damaged[40:]).all()


def test_the_l2_strength_is_chosen_by_spatial_cross_validation(rng: np.random.Generator) -> None:
    n = 120
    damaged = rng.random(n) < 0.5
    signal = damaged + rng.normal(0, 0.3, n)  # one informative column among noise
    x = np.column_stack([signal, rng.normal(size=(n, 8))])
    groups = np.repeat(np.arange(12), 10)
    assert ChangeClassifier().fit(x, damaged).c_ == DEFAULT_C  # no groups: nothing to cross-validate
    assert ChangeClassifier().fit(x, damaged, np.zeros(n)).c_ == DEFAULT_C  # one group: same
    clf = ChangeClassifier().fit(x, damaged, groups)
    assert clf.c_ in C_GRID and clf.c_ > min(C_GRID)  # a clean signal is not shrunk to the strongest penalty
    assert ChangeClassifier(c=0.5).fit(x, damaged, groups).c_ == 0.5  # a given strength is kept


def test_the_classifier_refuses_labels_of_one_class(rng: np.random.Generator) -> None:
    with pytest.raises(ModelConfigError, match="0 damaged of 5"):
        ChangeClassifier().fit(rng.normal(size=(5, 3)), np.zeros(5, dtype=bool))
    with pytest.raises(ModelConfigError, match="not fitted"):
        ChangeClassifier().predict_damaged(rng.normal(size=(5, 3)))
    with pytest.raises(ModelConfigError, match="unknown classifier 'forest'"):
        ChangeClassifier(kind="forest")


def test_gap_probabilities_take_whether_from_the_classifier_and_when_from_the_timing() -> None:
    timing = np.array([[0.1, 0.3, 0.6], [0.0, 0.0, 1.0]])
    probs = gap_probabilities(np.array([0.8, 0.5]), timing)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(probs[0], [0.2, 0.6, 0.2])
    np.testing.assert_allclose(probs[1], [0.25, 0.25, 0.5])  # no damaged mass in the timing: spread evenly
