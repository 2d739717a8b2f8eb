"""Simulated volunteers: a seeded pool of noisy human witnesses of a building's timeline.

A volunteer looks at the whole timeline of one building and marks the last date it was intact and the first
date it was damaged, then a grade per date; dates hidden by cloud are mostly answered ``not_visible``. So
answers are mostly monotone, with the errors people make (DESIGN section 6):

- the change is put one or two images off the truth, more often on hard buildings (small, cloudy at the
  change, partially damaged: the scenario's ``difficulty`` in 0..1) -- what is hard for the model is hard
  for people;
- partial damage is missed altogether now and then; intact buildings get an occasional false alarm;
- damaged and destroyed are confused; isolated slips make some answers non-monotone, mostly near the change;
- *careless* volunteers click through: all intact, or random-ish states, and rarely answer ``not_visible``;
- *adversarial* volunteers invert intact and damaged, or move the change by several images.

The kinds' parameters are :class:`SkillProfile` values in :data:`DEFAULT_PROFILES`; each volunteer's own
profile is its kind's, jittered log-normally (``PoolConfig.jitter``). Experts (gold reviewers) use
:data:`EXPERT_PROFILE` and the source ``expert``. The aggregator never sees these parameters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np

from active_learning.schema import Annotation, State
from active_learning.truth import BuildingTruth

__all__ = [
    "DEFAULT_PROFILES",
    "EXPERT_PROFILE",
    "PoolConfig",
    "SkillProfile",
    "Volunteer",
    "VolunteerKind",
    "VolunteerPool",
    "simulate_annotations",
    "simulate_expert_annotations",
    "synthetic_truths",
]

_EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


class VolunteerKind(StrEnum):
    GOOD = "good"
    MEDIOCRE = "mediocre"
    CARELESS = "careless"
    ADVERSARIAL = "adversarial"
    EXPERT = "expert"


@dataclass(frozen=True)
class SkillProfile:
    """How one kind of volunteer errs; probabilities per review unless said per date.

    Attributes:
        shift_rate: chance to put the change off the true gap on an easy building.
        difficulty_gain: extra shift chance per unit of building difficulty.
        miss_rate: chance to miss the damage entirely (answer intact throughout); doubled on partial damage.
        false_alarm_rate: chance to see a change on a building that was never damaged.
        slip_rate: per-date chance of an isolated wrong state (three times as likely next to the change).
        grade_error: chance to swap damaged and destroyed for the whole review.
        respects_clouds: per clouded date, chance to answer ``not_visible`` instead of guessing.
        skip_rate: per visible date, chance to answer ``not_visible`` anyway.
        effort: chance that a review is actually looked at; otherwise it is clicked through (careless).
        all_intact_share: of the clicked-through reviews, the share answered all intact (the rest random).
        malice: chance that a review is sabotaged (adversarial): inverted or shifted by several images.
    """

    shift_rate: float
    difficulty_gain: float
    miss_rate: float
    false_alarm_rate: float
    slip_rate: float
    grade_error: float
    respects_clouds: float
    skip_rate: float
    effort: float = 1.0
    all_intact_share: float = 0.5
    malice: float = 0.0

    def jittered(self, rng: np.random.Generator, sigma: float) -> SkillProfile:
        """This profile with every error rate scaled by an independent log-normal factor (capped at 0.95)."""

        def j(p: float) -> float:
            return float(min(0.95, p * np.exp(sigma * rng.standard_normal())))

        return replace(
            self,
            shift_rate=j(self.shift_rate),
            difficulty_gain=j(self.difficulty_gain),
            miss_rate=j(self.miss_rate),
            false_alarm_rate=j(self.false_alarm_rate),
            slip_rate=j(self.slip_rate),
            grade_error=j(self.grade_error),
            skip_rate=j(self.skip_rate),
        )


DEFAULT_PROFILES: dict[VolunteerKind, SkillProfile] = {
    VolunteerKind.GOOD: SkillProfile(
        shift_rate=0.06, difficulty_gain=0.30, miss_rate=0.02, false_alarm_rate=0.01, slip_rate=0.01,
        grade_error=0.10, respects_clouds=0.95, skip_rate=0.01,
    ),
    VolunteerKind.MEDIOCRE: SkillProfile(
        shift_rate=0.15, difficulty_gain=0.45, miss_rate=0.07, false_alarm_rate=0.04, slip_rate=0.03,
        grade_error=0.25, respects_clouds=0.80, skip_rate=0.03,
    ),
    VolunteerKind.CARELESS: SkillProfile(
        shift_rate=0.30, difficulty_gain=0.50, miss_rate=0.15, false_alarm_rate=0.08, slip_rate=0.08,
        grade_error=0.40, respects_clouds=0.30, skip_rate=0.01, effort=0.3, all_intact_share=0.5,
    ),
    VolunteerKind.ADVERSARIAL: SkillProfile(
        shift_rate=0.10, difficulty_gain=0.40, miss_rate=0.05, false_alarm_rate=0.03, slip_rate=0.02,
        grade_error=0.30, respects_clouds=0.70, skip_rate=0.02, malice=0.8,
    ),
}  # fmt: skip

EXPERT_PROFILE = SkillProfile(
    shift_rate=0.005, difficulty_gain=0.02, miss_rate=0.002, false_alarm_rate=0.002, slip_rate=0.0,
    grade_error=0.02, respects_clouds=1.0, skip_rate=0.0,
)  # fmt: skip


@dataclass(frozen=True)
class PoolConfig:
    """Composition of a volunteer pool.

    Attributes:
        shares: fraction of volunteers of each kind (normalised).
        profiles: the error profile of each kind.
        jitter: log-normal sigma of each volunteer's deviation from its kind's profile.
        activity_exponent: volunteer ``k`` (by rank) is picked with weight ``(k + 1) ** -activity_exponent``:
            a few volunteers do most reviews and many do one or two, as in real crowdsourcing projects.
    """

    shares: tuple[tuple[VolunteerKind, float], ...] = (
        (VolunteerKind.GOOD, 0.45),
        (VolunteerKind.MEDIOCRE, 0.43),
        (VolunteerKind.CARELESS, 0.08),
        (VolunteerKind.ADVERSARIAL, 0.04),
    )
    profiles: tuple[tuple[VolunteerKind, SkillProfile], ...] = tuple(DEFAULT_PROFILES.items())
    jitter: float = 0.3
    activity_exponent: float = 0.8

    def with_bad_share(self, share: float) -> PoolConfig:
        """The same pool with ``share`` of volunteers careless or adversarial (60/40), the rest good/mediocre as before."""
        if not 0.0 <= share < 1.0:
            raise ValueError(f"bad share must be in [0, 1), got {share}")
        good = dict(self.shares)
        honest = good.get(VolunteerKind.GOOD, 0.0) + good.get(VolunteerKind.MEDIOCRE, 0.0)
        scale = (1.0 - share) / honest if honest > 0 else 0.0
        return replace(
            self,
            shares=(
                (VolunteerKind.GOOD, good.get(VolunteerKind.GOOD, 0.0) * scale),
                (VolunteerKind.MEDIOCRE, good.get(VolunteerKind.MEDIOCRE, 0.0) * scale),
                (VolunteerKind.CARELESS, 0.6 * share),
                (VolunteerKind.ADVERSARIAL, 0.4 * share),
            ),
        )


@dataclass(frozen=True)
class Volunteer:
    """One simulated volunteer: pseudonymous id, kind (for evaluation only) and own error profile."""

    volunteer_id: str
    kind: VolunteerKind
    profile: SkillProfile
    activity: float = 1.0


@dataclass(frozen=True)
class VolunteerPool:
    """A seeded pool of volunteers.

    Attributes:
        volunteers: the volunteers, most active first.
        seed: the seed it was drawn with.
    """

    volunteers: tuple[Volunteer, ...]
    seed: int
    config: PoolConfig = field(default_factory=PoolConfig)

    @classmethod
    def create(cls, n: int, seed: int, config: PoolConfig | None = None) -> VolunteerPool:
        """Draw ``n`` volunteers; the same ``(n, seed, config)`` always gives the same pool."""
        if n < 1:
            raise ValueError(f"a pool needs at least one volunteer, got n={n}")
        config = config or PoolConfig()
        rng = np.random.default_rng([seed, 0x501])
        kinds = [k for k, _ in config.shares]
        share = np.array([s for _, s in config.shares], dtype=float)
        counts = np.floor(share / share.sum() * n).astype(int)
        order = np.argsort(-(share / share.sum() * n - counts))
        for i in order[: n - counts.sum()]:
            counts[i] += 1
        drawn = [k for k, c in zip(kinds, counts, strict=True) for _ in range(c)]
        rng.shuffle(drawn)  # kind independent of activity rank
        profiles = dict(config.profiles)
        weights = (np.arange(n) + 1.0) ** -config.activity_exponent
        volunteers = tuple(
            Volunteer(
                volunteer_id=f"v{seed % 10_000:04d}-{i:05d}",
                kind=kind,
                profile=profiles[kind].jittered(rng, config.jitter),
                activity=float(w),
            )
            for i, (kind, w) in enumerate(zip(drawn, weights, strict=True))
        )
        return cls(volunteers=volunteers, seed=seed, config=config)

    def kinds(self) -> dict[str, VolunteerKind]:
        """Volunteer id -> kind (for evaluating quality reports; never given to the aggregator)."""
        return {v.volunteer_id: v.kind for v in self.volunteers}

    def choose(self, k: int, rng: np.random.Generator) -> list[Volunteer]:
        """``k`` distinct volunteers drawn by activity."""
        if k > len(self.volunteers):
            raise ValueError(f"asked for {k} distinct volunteers from a pool of {len(self.volunteers)}")
        w = np.array([v.activity for v in self.volunteers])
        idx = rng.choice(len(self.volunteers), size=k, replace=False, p=w / w.sum())
        return [self.volunteers[i] for i in idx]


def _shift(rng: np.random.Generator, lo: int, hi: int) -> int:
    """A signed error of ``lo..hi`` images, geometric in size, a little more often late than early."""
    size = min(hi, lo + int(rng.geometric(0.55)) - 1)
    return size if rng.random() < 0.55 else -size


def answer(
    truth: BuildingTruth, profile: SkillProfile, rng: np.random.Generator, *, slips: bool = True
) -> tuple[State, ...]:
    """One review of ``truth`` by a volunteer with ``profile``: a state per date.

    ``slips=False`` leaves out the isolated per-date slips (the errors of clicking a state on every date) but
    draws the same random numbers, so the review is otherwise the same one: what the volunteer perceived.
    """
    n, g = truth.n_dates, truth.true_gap
    p = profile
    if rng.random() >= p.effort:  # clicked through without looking
        if rng.random() < p.all_intact_share:
            return (State.INTACT,) * n
        g_rand = int(rng.integers(0, n + 1))
        grade = State.DAMAGED if rng.random() < 0.5 else State.DESTROYED
        out = [State.INTACT if t < g_rand else grade for t in range(n)]
        for slip in np.flatnonzero(rng.random(n) < 0.25):
            out[int(slip)] = State(int(rng.integers(0, 3)))
        return tuple(out)

    difficulty = float(np.clip(truth.difficulty, 0.0, 1.0))
    perceived = g
    sabotage = rng.random() < p.malice
    invert = sabotage and rng.random() < 0.5
    if sabotage and not invert:
        perceived = int(np.clip(g + _shift(rng, 2, 5), 0, n))
    elif g < n:
        miss = min(0.9, p.miss_rate * (2.0 if truth.partial else 1.0) * (1.0 + difficulty))
        if rng.random() < miss:
            perceived = n
        elif rng.random() < min(0.9, p.shift_rate + p.difficulty_gain * difficulty):
            perceived = int(np.clip(g + _shift(rng, 1, 4), 0, n))
    elif rng.random() < p.false_alarm_rate * (1.0 + difficulty):
        perceived = int(rng.integers(max(0, n - 6), n))  # false alarms in the late, busy months

    grade_swap = rng.random() < p.grade_error * (1.5 if truth.partial else 1.0)
    default_grade = truth.states[g] if g < n else State.DAMAGED
    out = []
    for t in range(n):
        if t < perceived:
            s = State.INTACT
        else:
            s = truth.states[t] if t >= g and truth.states[t] != State.INTACT else default_grade
            if grade_swap:
                s = State.DESTROYED if s == State.DAMAGED else State.DAMAGED
        if invert:
            s = State.DAMAGED if s == State.INTACT else State.INTACT
        near = abs(t - perceived) <= 1
        if rng.random() < p.slip_rate * (3.0 if near else 1.0):
            slipped = (
                State.INTACT
                if s != State.INTACT
                else (State.DAMAGED if rng.random() < 0.6 else State.DESTROYED)
            )
            s = slipped if slips else s
        if not truth.visible[t]:
            if rng.random() < p.respects_clouds:
                s = State.NOT_VISIBLE
        elif rng.random() < p.skip_rate:
            s = State.NOT_VISIBLE
        out.append(s)
    return tuple(out)


def simulate_annotations(
    truths: Sequence[BuildingTruth],
    pool: VolunteerPool,
    per_building: int,
    seed: int,
    *,
    start: dt.datetime = _EPOCH,
    slips: bool = True,
) -> list[Annotation]:
    """``per_building`` reviews of every building by distinct volunteers of ``pool``, deterministic by seed.

    External ids are ``sim:<seed>:<n>``; submission times advance one minute per review from ``start``.
    ``slips=False`` gives the same reviews by the same volunteers without their isolated per-date slips
    (:func:`answer`).
    """
    rng = np.random.default_rng([seed, 0xA11])
    out: list[Annotation] = []
    for truth in truths:
        for volunteer in pool.choose(per_building, rng):
            out.append(
                Annotation(
                    building_id=truth.building_id,
                    volunteer_id=volunteer.volunteer_id,
                    source="simulated",
                    states=answer(truth, volunteer.profile, rng, slips=slips),
                    submitted_at=start + dt.timedelta(minutes=len(out)),
                    external_id=f"sim:{seed}:{len(out)}",
                )
            )
    return out


def simulate_expert_annotations(
    truths: Iterable[BuildingTruth], seed: int, *, start: dt.datetime = _EPOCH, reviewer: str = "expert-01"
) -> list[Annotation]:
    """Gold reviews (source ``expert``): near perfect, ``not_visible`` on every clouded date."""
    rng = np.random.default_rng([seed, 0xE0])
    out = []
    for i, truth in enumerate(truths):
        states = answer(truth, EXPERT_PROFILE, rng)
        out.append(
            Annotation(
                truth.building_id,
                reviewer,
                "expert",
                states,
                start + dt.timedelta(minutes=i),
                f"gold:{seed}:{i}",
            )
        )
    return out


def synthetic_truths(
    n_buildings: int, n_dates: int, seed: int, *, damaged_share: float = 0.5, cloud_rate: float = 0.12
) -> tuple[BuildingTruth, ...]:
    """Stand-in truth for when no rendered scenario is at hand (tests, quick benchmarks).

    Damaged buildings get a gap drawn with more mass in the later dates (the 2017 battle's progression), a
    quarter of them damaged before being destroyed; dates are clouded independently with ``cloud_rate``;
    difficulty mixes a random size term, cloud at the change and partial damage, like the scenario's.
    """
    rng = np.random.default_rng([seed, 0x7E])
    late = np.linspace(0.5, 1.5, n_dates)
    out = []
    for i in range(n_buildings):
        damaged = rng.random() < damaged_share
        g = int(rng.choice(n_dates, p=late / late.sum())) if damaged else n_dates
        partial = damaged and rng.random() < 0.2
        destroyed_from = n_dates
        if damaged and not partial:
            destroyed_from = g if rng.random() < 0.75 else int(rng.integers(g, n_dates))
        states = tuple(
            State.INTACT if t < g else (State.DESTROYED if t >= destroyed_from else State.DAMAGED)
            for t in range(n_dates)
        )
        visible = tuple(bool(v) for v in rng.random(n_dates) >= cloud_rate)
        cloud_at_change = float(g < n_dates and (not visible[g] or (g > 0 and not visible[g - 1])))
        difficulty = float(np.clip(0.45 * rng.beta(2, 3) + 0.3 * cloud_at_change + 0.3 * partial, 0, 1))
        out.append(BuildingTruth(f"b{i:06d}", g, states, visible, difficulty, partial))
    return tuple(out)
