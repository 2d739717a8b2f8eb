"""Simulated crowds that do NOT share the aggregator's error model, to grade the system off its own assumptions.

The default simulated volunteers (``active_learning.volunteers``) err the way the aggregator models them:
a review shifts the change by whole images, misses it or raises a false alarm, and saboteurs invert. The
crowd here errs differently, on purpose:

- every date is judged on its own: an error at one date says nothing about the next (no shifted boundary, no
  monotone answer);
- a date's error rate grows with the building's cloud cover on that date (``truth_dates.csv``
  ``cloud_fraction``) and with the season's light (low winter sun in February and March, summer dust haze in
  July and August);
- damaged and destroyed are confused at a fixed rate; careless volunteers answer a random state on a share of
  the dates; adversarial ones flip intact and damaged on most dates, independently.

It is a labeler factory, so it drives every benchmark arm unchanged:
``python -m experiments.benchmarks.human_effort --labeler experiments.benchmarks.crowds:independent_errors``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from active_learning.schema import State
from active_learning.simulated_labeler import CAMPAIGN_POOL, SimulatedPoolLabeler
from active_learning.truth import BuildingTruth, load_truth
from active_learning.volunteers import Volunteer, VolunteerKind

__all__ = ["independent_errors"]

_BASE_ERROR = {
    VolunteerKind.GOOD: 0.03,
    VolunteerKind.MEDIOCRE: 0.08,
    VolunteerKind.CARELESS: 0.15,
    VolunteerKind.ADVERSARIAL: 0.05,
    VolunteerKind.EXPERT: 0.005,
}
_RANDOM_DATES = 0.4  # careless: share of dates answered at random
_FLIP_DATES = 0.6  # adversarial: share of dates with intact and damaged swapped
_GRADE_CONFUSION = 0.2


def _season(day: dt.date) -> float:
    if day.month in (1, 2, 3, 12):
        return 1.5  # low sun, long shadows
    if day.month in (7, 8):
        return 1.3  # dust haze
    return 1.0


def independent_errors(scenario_dir: Path, seed: int) -> SimulatedPoolLabeler:
    """The simulated platform with a crowd whose errors are independent per date (module docstring)."""
    truth = load_truth(scenario_dir)
    season = np.array([_season(d) for d in truth.dates])
    per_date = truth.per_date
    cloud = (
        per_date.pivot(index="building_id", columns="date_index", values="cloud_fraction")
        if "cloud_fraction" in per_date.columns
        else None
    )

    def answer(b: BuildingTruth, volunteer: Volunteer, rng: np.random.Generator) -> tuple[State, ...]:
        clouds = cloud.loc[b.building_id].to_numpy(dtype=float) if cloud is not None else np.zeros(b.n_dates)
        rate = np.clip(_BASE_ERROR[volunteer.kind] * season * (1.0 + 3.0 * clouds), 0.0, 0.45)
        out = []
        for t, true in enumerate(b.states):
            damaged = true != State.INTACT
            if volunteer.kind == VolunteerKind.CARELESS and rng.random() < _RANDOM_DATES:
                out.append(State(int(rng.integers(0, 3))))
                continue
            if (
                volunteer.kind == VolunteerKind.ADVERSARIAL and rng.random() < _FLIP_DATES
            ) or rng.random() < rate[t]:
                damaged = not damaged
            if not damaged:
                s = State.INTACT
            elif true == State.INTACT:  # a false alarm: a grade at random
                s = State.DAMAGED if rng.random() < 0.5 else State.DESTROYED
            else:
                s = true
                if rng.random() < _GRADE_CONFUSION:
                    s = State.DESTROYED if s == State.DAMAGED else State.DAMAGED
            if not b.visible[t] and rng.random() < 0.8:
                s = State.NOT_VISIBLE
            out.append(s)
        return tuple(out)

    return SimulatedPoolLabeler.from_scenario(
        scenario_dir, seed, config=CAMPAIGN_POOL, answer=answer, name="independent-errors"
    )
