"""The volunteer quality report flags careless and adversarial volunteers, with uncertainty."""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from active_learning.aggregation import GapAggregator, GapDawidSkene, PerDateDawidSkene
from active_learning.errors import AggregationError
from active_learning.quality import (
    FLAG_ADVERSARIAL,
    FLAG_CARELESS,
    leave_one_out,
    plot_report,
    volunteer_report,
)
from active_learning.schema import Annotation, State, annotations_to_table, validate_table
from active_learning.volunteers import (
    PoolConfig,
    VolunteerKind,
    VolunteerPool,
    simulate_annotations,
    synthetic_truths,
)

IN, D, X, N = State.INTACT, State.DAMAGED, State.DESTROYED, State.NOT_VISIBLE
WHEN = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
T = 8
T_SMALL = 4


def _path(gap: int) -> tuple[State, ...]:
    return tuple(IN if t < gap else D for t in range(T))


def test_report_flags_bad_volunteers_more_than_good_ones(tmp_path) -> None:
    truths = synthetic_truths(400, 10, seed=11)
    pool = VolunteerPool.create(30, seed=11, config=PoolConfig(activity_exponent=0.0).with_bad_share(0.3))
    table = validate_table(
        annotations_to_table(simulate_annotations(truths, pool, 4, seed=11)), n_dates=10
    ).table
    fit = GapDawidSkene().fit(table, 10)
    report = volunteer_report(fit, table)
    assert set(report.columns) >= {
        "volunteer_id",
        "accuracy",
        "accuracy_lo",
        "accuracy_hi",
        "flag",
        "n_reviews",
    }
    assert (report.accuracy_lo <= report.accuracy).all() and (report.accuracy <= report.accuracy_hi).all()
    kinds = pool.kinds()
    report["kind"] = report.volunteer_id.map(kinds)
    bad = report[report.kind.isin([VolunteerKind.CARELESS, VolunteerKind.ADVERSARIAL])]
    good = report[report.kind == VolunteerKind.GOOD]
    assert (bad.flag != "").mean() >= 0.6
    assert (good.flag == "").mean() >= 0.9
    adversarial = report[report.kind == VolunteerKind.ADVERSARIAL]
    assert (adversarial.flag == FLAG_ADVERSARIAL).any()
    # The aggregator's volunteer-level saboteur posterior separates adversarial from good volunteers.
    assert adversarial.saboteur_prob.mean() > good.saboteur_prob.mean() + 0.5
    assert set(report.flag) <= {"", FLAG_CARELESS, FLAG_ADVERSARIAL}
    png = plot_report(report, tmp_path / "quality.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _careless_crowd(rng: np.random.Generator) -> pd.DataFrame:
    """Eight honest volunteers (three per building on 60 buildings); a careless one, c1, answering random
    monotone paths as the only reviewer of 40 buildings; on 10 more it and a second careless one, c2, outvote
    one honest reviewer."""
    rows = []
    for b in range(60):
        gap = int(rng.integers(1, 5))
        for v in rng.choice(8, 3, replace=False):
            rows.append(Annotation(f"b{b}", f"h{v}", "simulated", _path(gap), WHEN, f"h{v}-{b}"))
    for b in range(60, 110):
        gap = int(rng.integers(1, 5))
        rows.append(
            Annotation(f"b{b}", "c1", "simulated", _path(int(rng.integers(0, T + 1))), WHEN, f"c1-{b}")
        )
        if b >= 100:
            rows.append(
                Annotation(f"b{b}", "c2", "simulated", _path(int(rng.integers(0, T + 1))), WHEN, f"c2-{b}")
            )
            rows.append(Annotation(f"b{b}", "h0", "simulated", _path(gap), WHEN, f"h0-{b}"))
    return validate_table(annotations_to_table(rows), n_dates=T, strict=True).table


@pytest.mark.parametrize("aggregator", [GapDawidSkene, PerDateDawidSkene])
def test_a_careless_volunteer_is_scored_without_its_own_answers(
    aggregator: type[GapAggregator], rng: np.random.Generator
) -> None:
    table = _careless_crowd(rng)
    fit = aggregator().fit(table, T)
    report = volunteer_report(fit, table).set_index("volunteer_id")
    inflated = volunteer_report(fit, table, exclude_own=False).set_index("volunteer_id")
    # scored against posteriors its own random answers made, c1 agrees with itself on the 40 buildings it alone
    # reviewed; without them it is a random clicker
    assert report.accuracy["c1"] < inflated.accuracy["c1"] - 0.05
    assert report.flag["c1"] != "" and report.flag["c2"] != ""
    honest = report[report.index.str.startswith("h")]
    assert (honest.flag == "").all() and (honest.accuracy > 0.85).all()


crowds = st.lists(
    st.tuples(
        st.integers(0, 3),  # building
        st.integers(0, 3),  # volunteer
        st.lists(st.sampled_from([IN, D, X, N]), min_size=T_SMALL, max_size=T_SMALL),
    ),
    min_size=1,
    max_size=12,
)


@given(
    crowd=crowds,
    gold=st.booleans(),
    model=st.sampled_from(["shift", "shift_levels_inversion", "shift_no_types", "per_date"]),
)
@settings(max_examples=25)
def test_leave_one_out_equals_the_posterior_without_the_volunteer_under_frozen_parameters(
    crowd: list[tuple[int, int, list[State]]], gold: bool, model: str
) -> None:
    rows = [
        Annotation(f"b{b}", f"v{v}", "simulated", tuple(states), WHEN, f"r{i}")
        for i, (b, v, states) in enumerate(crowd)
    ]
    if gold:
        rows.append(Annotation("b0", "expert", "expert", (IN, D, D, D), WHEN, "gold"))
    table = validate_table(annotations_to_table(rows), n_dates=T_SMALL, strict=True).table
    aggregator = {
        "shift": GapDawidSkene(n_iter=3),
        "shift_levels_inversion": GapDawidSkene(n_iter=3, difficulty_levels=2, inversion=True),
        "shift_no_types": GapDawidSkene(n_iter=3, volunteer_types=False),
        "per_date": PerDateDawidSkene(n_iter=3),
    }[model]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = aggregator.fit(table, T_SMALL, building_ids=[f"b{b}" for b in range(4)])
    loo = leave_one_out(fit, table)
    for v in set(loo.volunteer_ids):
        without = table[(table["volunteer_id"] != v) | (table["source"] == "expert")]
        frozen = np.exp(fit.log_joint(without)).sum(axis=(1, 3))  # [B, G]
        mine = loo.volunteer_ids == v
        np.testing.assert_allclose(loo.gap_probs[mine], frozen[loo.building[mine]], atol=1e-9)


@pytest.mark.filterwarnings("ignore:.*did not converge:RuntimeWarning")  # two iterations are plenty here
def test_a_report_on_reviews_the_fit_did_not_see_is_refused(rng: np.random.Generator) -> None:
    table = _careless_crowd(rng)
    fit = GapDawidSkene(n_iter=2).fit(table, T)
    newcomer = annotations_to_table([Annotation("b1", "newcomer", "simulated", _path(2), WHEN, "new-1")])
    with pytest.raises(AggregationError, match=r"\['newcomer'\] were not part of the fit"):
        volunteer_report(fit, pd.concat([table, newcomer], ignore_index=True))
