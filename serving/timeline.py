"""Buildings destroyed per week, with a 90% band, from every building's posterior over gaps.

A building destroyed in gap g (1 <= g < T) was destroyed on one of the days after its last intact image and up
to its first damaged image; with no better knowledge each of those days is equally likely. The expected count
per week is the sum over buildings of the posterior mass falling in that week. The band comes from
``draws`` joint samples: each draw picks every building's gap from its posterior and a day inside it, and
counts per week; the band is the 5th and 95th percentile of those counts. Gap 0 (damaged before the first image)
and gap T (not damaged by the last one) have no day and are reported as totals beside the weeks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["WeeklyDestruction", "destruction_timeline"]

BAND = 0.9


@dataclass(frozen=True)
class WeeklyDestruction:
    """The destruction timeline.

    Attributes:
        week_starts: Monday of each week, from the first to the last image.
        expected: expected buildings destroyed per week.
        lo / hi: the 90% band of the count per week.
        before_first: expected buildings already damaged in the first image.
        not_damaged: expected buildings not damaged by the last image.
        buildings: buildings counted.
        draws: Monte-Carlo draws behind the band.
    """

    week_starts: tuple[dt.date, ...]
    expected: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    before_first: float
    not_damaged: float
    buildings: int
    draws: int


def _monday(d: dt.date) -> dt.date:
    return d - dt.timedelta(days=d.weekday())


def destruction_timeline(
    groups: Sequence[tuple[Sequence[dt.date], np.ndarray]], *, draws: int = 400, seed: int = 0
) -> WeeklyDestruction:
    """Weekly destruction counts over buildings grouped by timeline.

    Args:
        groups: ``(dates, probs)`` pairs; ``probs`` is ``[N, T + 1]`` for the N buildings sharing ``dates``.
        draws: Monte-Carlo draws for the band.
        seed: seed of the draws (the same data gives the same band).
    """
    rng = np.random.default_rng(seed)
    groups = [(tuple(d), np.asarray(p, dtype=np.float64)) for d, p in groups if len(d) and len(p)]
    if not groups:
        return WeeklyDestruction((), np.zeros(0), np.zeros(0), np.zeros(0), 0.0, 0.0, 0, draws)
    first = min(d[0] for d, _ in groups)
    last = max(d[-1] for d, _ in groups)
    start = _monday(first)
    n_weeks = (last - start).days // 7 + 1
    expected = np.zeros(n_weeks)
    sampled = np.zeros((draws, n_weeks))
    before = not_damaged = 0.0
    n_buildings = 0
    for dates, probs in groups:
        t = len(dates)
        probs = probs / probs.sum(axis=1, keepdims=True)
        n_buildings += len(probs)
        before += float(probs[:, 0].sum())
        not_damaged += float(probs[:, t].sum())
        # day offsets (from ``start``) of the first day of each gap 1..T-1 and its length in days
        offs = np.array([(d - start).days for d in dates])
        lo_day, length = offs[:-1] + 1, np.diff(offs)  # gap g covers days offs[g-1]+1 .. offs[g]
        for gap in range(1, t):
            if length[gap - 1] <= 0:
                continue
            days = lo_day[gap - 1] + np.arange(length[gap - 1])
            np.add.at(expected, days // 7, probs[:, gap].sum() / length[gap - 1])
        # joint draws: a gap per building and draw, then a day inside it
        cdf = np.cumsum(probs, axis=1)
        u = rng.random((draws, len(probs), 1))
        gaps = (u > cdf[None, :, :]).sum(axis=2).clip(0, t)  # [draws, N]
        inside = (gaps >= 1) & (gaps < t)
        g = np.where(inside, gaps, 1)
        span = np.maximum(length[g - 1], 1)
        day = lo_day[g - 1] + np.floor(rng.random(g.shape) * span).astype(int)
        week = np.where(inside, day // 7, -1)
        for k in range(draws):
            w = week[k][week[k] >= 0]
            sampled[k] += np.bincount(w, minlength=n_weeks)[:n_weeks]
    tail = (1 - BAND) / 2
    lo, hi = np.quantile(sampled, [tail, 1 - tail], axis=0)
    weeks = tuple(start + dt.timedelta(days=7 * k) for k in range(n_weeks))
    return WeeklyDestruction(weeks, expected, lo, hi, before, not_damaged, n_buildings, draws)
