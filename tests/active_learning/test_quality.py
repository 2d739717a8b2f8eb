"""The volunteer quality report flags careless and adversarial volunteers, with uncertainty."""

from __future__ import annotations

from active_learning.aggregation import GapDawidSkene
from active_learning.quality import FLAG_ADVERSARIAL, FLAG_CARELESS, plot_report, volunteer_report
from active_learning.schema import annotations_to_table, validate_table
from active_learning.volunteers import (
    PoolConfig,
    VolunteerKind,
    VolunteerPool,
    simulate_annotations,
    synthetic_truths,
)


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
