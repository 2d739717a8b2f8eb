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


def test_views_of_several_scenarios_pool_with_their_own_ids_labels_and_blocks(
    rng: np.random.Generator,
) -> None:
    from experiments.teacher import bitemporal_views, pooled_views

    parts = []
    for k in range(2):
        arrays, gaps = synthetic_chips(rng, n=6, n_dates=5, size=8, cloud_rate=0.0)
        parts.append(bitemporal_views(arrays, gaps, pairs=2, seed=k, prefix=f"look{k}/"))
    views, labels = pooled_views(parts)
    assert len(views.building_ids) == 24 == len(set(views.building_ids))
    assert labels.building_ids == views.building_ids
    assert views.building_ids[0].startswith("look0/") and views.building_ids[-1].startswith("look1/")
    np.testing.assert_array_equal(views.chips[12:], parts[1][0].chips)
    np.testing.assert_array_equal(labels.hard_gap(), np.concatenate([lab.hard_gap() for _, lab in parts]))
    assert views.origins is not None
    assert views.origins[12:, 0].min() - views.origins[:12, 0].max() > 50_000  # no block spans two looks
