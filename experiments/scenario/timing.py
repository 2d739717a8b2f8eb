"""When each building was hit: acquisition dates and true destruction gaps inside the real UNOSAT windows.

Each UNOSAT point has grades on 3 Feb 2017 and 21 Oct 2017 (and earlier dates). A point already damaged on
3 Feb 2017 gets gap 0; a point first damaged by 21 Oct 2017 gets a strike date inside that window: a share of
early air strikes (3 Feb to 6 Jun), the rest following the 2017 battle (6 Jun to 17 Oct), whose front moved
from the east and west edges of the city toward the centre (the stadium and National Hospital, taken last).
Some damaged buildings are destroyed by a later strike; some destroyed lots are cleared of rubble, a few
damaged buildings are rebuilt (truth stays damaged: destruction is one-way within the timeline).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from pyproj import Transformer

from experiments.scenario.layout import CRS, Layout
from experiments.scenario.presets import Preset

__all__ = ["BATTLE_END", "BATTLE_START", "Truth", "acquisition_dates", "draw_truth"]

BATTLE_START = dt.date(2017, 6, 6)
BATTLE_END = dt.date(2017, 10, 17)
_FINAL_POCKET_LONLAT = (39.0075, 35.9565)  # stadium / National Hospital, the last pocket
_EARLY_SHARE = 0.2
_AHEAD_OF_FRONT_SHARE = 0.25


@dataclass(frozen=True)
class Truth:
    """Per-building truth in gaps (see docs/CONTRACTS.md): states are intact for ``t < gap``, destroyed for
    ``t >= destroyed_gap``, damaged in between.

    Attributes:
        gap / destroyed_gap: true destruction gap and gap at which the building became destroyed (T = never).
        final_grade: ``intact``, ``damaged`` or ``destroyed``.
        damage_fraction: share of the roof a non-destroying strike broke (0 for intact buildings).
        partial: damaged (not destroyed) with only a small part of the roof broken.
        cleared_gap / rebuilt_gap: gap after which the rubble is cleared / the building rebuilt (T = never).
    """

    gap: np.ndarray
    destroyed_gap: np.ndarray
    final_grade: np.ndarray
    damage_fraction: np.ndarray
    partial: np.ndarray
    cleared_gap: np.ndarray
    rebuilt_gap: np.ndarray

    def states(self, n_dates: int) -> np.ndarray:
        """``[N, T]`` state codes: 0 intact, 1 damaged, 2 destroyed."""
        t = np.arange(n_dates)[None, :]
        state = np.where(t < self.gap[:, None], 0, 1)
        return np.where(t >= self.destroyed_gap[:, None], 2, state)


def acquisition_dates(preset: Preset, rng: np.random.Generator) -> list[dt.date]:
    """Irregular acquisition dates: first and last fixed, more images during the battle, >= 5 days apart."""
    first, last = dt.date.fromisoformat(preset.first_date), dt.date.fromisoformat(preset.last_date)
    span = (last - first).days
    battle = ((BATTLE_START - first).days, (BATTLE_END - first).days)
    n_inner = preset.n_dates - 2
    for _ in range(1000):
        n_early = max(1, int(round(n_inner * 0.3)))
        offsets = np.concatenate(
            [rng.integers(6, battle[0], n_early), rng.integers(battle[0], span - 4, n_inner - n_early)]
        )
        offsets = np.sort(np.concatenate([[0], offsets, [span]]))
        if np.all(np.diff(offsets) >= 5):
            return [first + dt.timedelta(days=int(o)) for o in offsets]
    raise RuntimeError(f"could not place {preset.n_dates} dates at least 5 days apart")  # pragma: no cover


def _gap_of(days: np.ndarray, date_days: np.ndarray) -> np.ndarray:
    """Gap of a strike on day ``days`` (since the first date): the number of images taken before it."""
    return np.searchsorted(date_days, days, side="left").astype(np.int64)


def _strike_days(layout: Layout, idx: np.ndarray, rng: np.random.Generator, first: dt.date) -> np.ndarray:
    """Strike day (since ``first``) for buildings ``idx``, following the battle's progression."""
    n = len(idx)
    start, end = (BATTLE_START - first).days, (BATTLE_END - first).days
    px, py = Transformer.from_crs("EPSG:4326", CRS, always_xy=True).transform(*_FINAL_POCKET_LONLAT)
    # the front closed in from east and west: east-west distance counts more than north-south distance
    dist = np.hypot((layout.x[idx] - px), 1.6 * (layout.y[idx] - py))
    progress = 1.0 - np.clip(dist / 5200.0, 0.0, 1.0)  # 0 at the edges (June) .. 1 at the pocket (October)
    front = start + progress * (end - start) + rng.normal(0, 14, n)
    ahead = start + rng.uniform(0, 1, n) * (end - start)
    early = rng.uniform(1, start, n)
    kind = rng.random(n)
    days = np.where(
        kind < _EARLY_SHARE, early, np.where(kind < _EARLY_SHARE + _AHEAD_OF_FRONT_SHARE, ahead, front)
    )
    return np.clip(days, 1, end).round()


def draw_truth(layout: Layout, dates: list[dt.date], rng: np.random.Generator) -> Truth:
    """Draw every building's truth from its UNOSAT grades (intact buildings stay intact)."""
    n, t_count = len(layout), len(dates)
    date_days = np.array([(d - dates[0]).days for d in dates])
    g = layout.grades
    feb, oct_ = g[:, 3], g[:, 4]
    earlier = g[:, :3]
    last_earlier = np.full(n, np.nan)
    for col in range(earlier.shape[1]):
        last_earlier = np.where(np.isnan(earlier[:, col]), last_earlier, earlier[:, col])
    feb_eff = np.where(np.isnan(feb) & np.isnan(oct_), last_earlier, feb)
    before = feb_eff >= 1
    within = ~before & (oct_ >= 1)
    peak = np.nanmax(np.where(np.isnan(g), -1, g), axis=1)
    final_code = np.where(np.nan_to_num(oct_, nan=-1) >= 1, oct_, np.where(before, feb_eff, 0))
    final_code = np.where(before & (feb_eff == 3), 3, final_code)

    gap = np.full(n, t_count, dtype=np.int64)
    gap[before] = 0
    idx = np.flatnonzero(within)
    strike = _strike_days(layout, idx, rng, dates[0])
    gap[idx] = np.clip(_gap_of(strike, date_days), 1, t_count - 1)

    destroyed_gap = np.full(n, t_count, dtype=np.int64)
    destroyed = final_code == 3
    destroyed_gap[destroyed] = gap[destroyed]
    # damaged first, destroyed by a later strike: real for points graded 1-2 in Feb and 3 in Oct, drawn for
    # about 30% of the others destroyed in the window
    later = destroyed & ((before & (feb_eff < 3)) | (within & (rng.random(n) < 0.3) & (gap <= t_count - 2)))
    for i in np.flatnonzero(later):
        base = 0 if gap[i] == 0 else date_days[gap[i] - 1] + 1
        second = base + rng.exponential(35.0) + 3
        destroyed_gap[i] = int(np.clip(_gap_of(np.array([second]), date_days)[0], gap[i] + 1, t_count - 1))
    destroyed_gap[destroyed & before & (feb_eff < 3) & (destroyed_gap == 0)] = 1

    grade = np.select([final_code >= 3, final_code >= 1], ["destroyed", "damaged"], "intact").astype(object)
    damage_fraction = np.zeros(n)
    mod = grade == "damaged"
    damage_fraction[mod] = np.where(
        final_code[mod] >= 2, rng.uniform(0.3, 0.6, mod.sum()), rng.uniform(0.1, 0.35, mod.sum())
    )
    damage_fraction[grade == "destroyed"] = 1.0
    partial = mod & (damage_fraction < 0.3)

    cleared_gap = np.full(n, t_count, dtype=np.int64)
    rebuilt_gap = np.full(n, t_count, dtype=np.int64)
    # rubble cleared: destroyed in Feb and re-graded lower in Oct, plus ~6% of the other destroyed lots
    clear = (
        destroyed
        & (destroyed_gap <= t_count - 3)
        & (((feb_eff == 3) & (oct_ >= 1) & (oct_ < 3)) | (rng.random(n) < 0.06))
    )
    for i in np.flatnonzero(clear):
        cleared_gap[i] = (
            int(rng.integers(destroyed_gap[i] + 2, t_count + 1))
            if destroyed_gap[i] + 2 <= t_count - 1
            else t_count
        )
    # rebuilt: damaged before Feb and graded 0 in Oct, plus ~4% of the other buildings damaged at gap 0
    rebuild = (gap == 0) & (grade == "damaged") & (((oct_ == 0) & (peak >= 1)) | (rng.random(n) < 0.04))
    for i in np.flatnonzero(rebuild):
        rebuilt_gap[i] = int(rng.integers(2, t_count))
    return Truth(
        gap=gap,
        destroyed_gap=destroyed_gap,
        final_grade=grade,
        damage_fraction=damage_fraction,
        partial=partial,
        cleared_gap=cleared_gap,
        rebuilt_gap=rebuilt_gap,
    )
