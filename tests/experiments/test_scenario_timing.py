"""Scenario timing and layout without rendering: dates, battle progression, layout sizes."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from experiments.scenario.extract import read_extract
from experiments.scenario.layout import build_layout
from experiments.scenario.presets import PRESETS, check_seed, get_preset
from experiments.scenario.timing import BATTLE_START, acquisition_dates, draw_truth


@pytest.fixture(scope="module")
def points():
    return read_extract()


def test_dates_are_irregular_fixed_at_the_unosat_ends_and_denser_in_the_battle() -> None:
    for seed in range(5):
        dates = acquisition_dates(get_preset("district"), np.random.default_rng(seed))
        assert len(dates) == 15 and dates[0] == dt.date(2017, 2, 3) and dates[-1] == dt.date(2017, 10, 21)
        gaps = np.diff([d.toordinal() for d in dates])
        assert gaps.min() >= 5 and len(set(gaps.tolist())) > 3
        assert sum(d >= BATTLE_START for d in dates) > sum(d < BATTLE_START for d in dates)


@pytest.mark.parametrize("name", ["tiny", "district"])
def test_layout_sizes_and_a_contiguous_area(points, name: str) -> None:
    preset = PRESETS[name]
    layout = build_layout(points, preset, np.random.default_rng(7))
    assert preset.damage_points is not None
    assert 0.95 * preset.damage_points <= (layout.source == "unosat").sum() <= preset.damage_points
    assert 0.7 * preset.damage_points <= (layout.source == "intact").sum() <= 1.05 * preset.damage_points
    assert len(set(layout.ids)) == len(layout)
    xmin, ymin, xmax, ymax = layout.bounds
    corners = layout.corners()
    assert corners[..., 0].min() >= xmin and corners[..., 0].max() <= xmax
    assert corners[..., 1].min() >= ymin and corners[..., 1].max() <= ymax
    assert (xmax - xmin) % 3 == 0 and (ymax - ymin) % 3 == 0
    assert layout.area_m2.min() >= 12  # the smallest are 4 m sheds: hard, but still 50+ pixels


def test_city_takes_every_distinct_unosat_point(points) -> None:
    layout = build_layout(points, get_preset("city"), np.random.default_rng(0))
    assert 0.99 * len(points) <= (layout.source == "unosat").sum() <= len(points)
    assert len(layout) > 24000


def test_battle_front_moves_from_the_edges_toward_the_centre(points) -> None:
    preset = get_preset("city")
    layout = build_layout(points, preset, np.random.default_rng(0))
    dates = acquisition_dates(preset, np.random.default_rng(1))
    truth = draw_truth(layout, dates, np.random.default_rng(2))
    t_count = len(dates)
    window = (truth.gap > 0) & (truth.gap < t_count)
    x = layout.x[window]
    centre = np.median(layout.x)
    edge = np.abs(x - centre) > 3000
    core = np.abs(x - centre) < 1000
    assert truth.gap[window][edge].mean() < truth.gap[window][core].mean() - 1
    states = truth.states(t_count)
    assert (np.diff(states, axis=1) >= 0).all()
    assert (truth.cleared_gap < t_count).sum() > 0 and (truth.rebuilt_gap < t_count).sum() > 0
    # some buildings are damaged first and destroyed by a later strike
    assert ((truth.destroyed_gap > truth.gap) & (truth.destroyed_gap < t_count)).sum() > 50


def test_check_seed() -> None:
    assert check_seed(0) == 0 and check_seed(2**32 - 1) == 2**32 - 1
