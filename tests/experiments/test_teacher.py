"""The synthetic teacher's bi-temporal views: labels derived from the true gap, unique ids, blocks kept."""

from __future__ import annotations

import numpy as np

from tests.model.dating_data import synthetic_chips


def test_views_are_pre_post_pairs_labelled_from_the_true_gap(rng: np.random.Generator) -> None:
    from experiments.teacher import bitemporal_views

    arrays, gaps = synthetic_chips(rng, n=10, n_dates=6, size=8, cloud_rate=0.0)
    views, labels = bitemporal_views(arrays, gaps, pairs=3, seed=0)
    assert views.n_dates == 2 and len(views.building_ids) == 30 == len(set(views.building_ids))
    assert labels.building_ids == views.building_ids
    for k, view_id in enumerate(views.building_ids):
        building, dates = view_id.split("@")
        i, j = (int(x) for x in dates.split("#")[0].split("-"))
        row = arrays.building_ids.index(building)
        g = int(gaps[row])
        assert i < j
        assert labels.hard_gap()[k] == (0 if g <= i else 1 if g <= j else 2)
        np.testing.assert_array_equal(views.chips[k], arrays.chips[row, [i, j]])
        np.testing.assert_array_equal(
            views.origins[k], arrays.origins[row]
        )  # views of a building share its block
    changed = (labels.hard_gap() == 1).mean()
    assert changed > 0.3  # pairs straddling a damaged building's change are over-drawn
