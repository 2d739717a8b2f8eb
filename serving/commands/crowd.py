"""``striketracker crowd simulate|aggregate``: crowd answers into the store, and what the crowd says.

``simulate`` registers a scenario's buildings (with their dates) in the store of record and adds simulated
volunteer reviews, so the pipeline can run without a live crowd. ``aggregate`` fits the crowd aggregator on every
stored review, decides retirement for every building, stores the posteriors and decisions as one round, and
writes the volunteer quality report (CSV + PNG, pseudonymous ids only).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

__all__ = ["register"]

console = Console()


def simulate(
    scenario: Annotated[
        Path, typer.Argument(help="scenario folder (truth.csv, truth_dates.csv, scenario.json)")
    ],
    per_building: Annotated[int, typer.Option(help="independent reviews per building")] = 3,
    fraction: Annotated[float, typer.Option(help="share of buildings that get reviews")] = 1.0,
    volunteers: Annotated[
        int, typer.Option(help="pool size (default: one per 10 buildings, at least 10)")
    ] = 0,
    seed: Annotated[int, typer.Option(help="seed of the pool and the answers")] = 0,
) -> None:
    """Register a scenario's buildings and add simulated volunteer reviews to the store."""
    from active_learning.errors import ActiveLearningError
    from active_learning.settings import Settings
    from active_learning.store import Store
    from active_learning.truth import load_truth
    from active_learning.volunteers import VolunteerPool, simulate_annotations

    if not 0.0 < fraction <= 1.0 or per_building < 1:
        console.print("[red]error:[/red] --fraction must be in (0, 1] and --per-building >= 1")
        raise typer.Exit(code=2)
    settings = Settings.from_env()
    try:
        scenario_truth = load_truth(scenario)
        truths = scenario_truth.building_truths()
        dates = [d.isoformat() for d in scenario_truth.dates]
        store = Store.open(settings.database_url)
        store.add_buildings([t.building_id for t in truths], n_dates=len(dates), attributes={"dates": dates})
        rng = np.random.default_rng([seed, 0x5E1])
        chosen = sorted(rng.choice(len(truths), size=max(1, round(fraction * len(truths))), replace=False))
        pool = VolunteerPool.create(volunteers or max(10, len(truths) // 10), seed)
        reviews = simulate_annotations([truths[i] for i in chosen], pool, per_building, seed)
        round_id = store.start_round("simulated-crowd", {"scenario": str(scenario), "seed": seed})
        report = store.add_annotations(reviews, round_id)
        store.finish_round(round_id, f"{len(report.inserted)} simulated reviews")
    except (ActiveLearningError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=1) from None
    console.print(
        f"{len(truths)} buildings registered; {len(report.inserted)} reviews stored, "
        f"{len(report.unchanged)} already there, {len(report.quarantined)} quarantined "
        f"(store {settings.database_url.split('///')[-1]})"
    )


def aggregate(
    out: Annotated[Path | None, typer.Option(help="report folder (default: <work>/reports)")] = None,
) -> None:
    """Aggregate every stored review, decide retirement, store posteriors and decisions, report volunteers."""
    from active_learning import Posterior
    from active_learning.aggregation import GapDawidSkene
    from active_learning.errors import ActiveLearningError
    from active_learning.quality import plot_report, volunteer_report
    from active_learning.retirement import RetirementPolicy, decide_all, evidence_from_fit
    from active_learning.schema import COL_VOLUNTEER
    from active_learning.settings import Settings
    from active_learning.store import Store

    settings = Settings.from_env()
    out = out or settings.work_dir / "reports"
    try:
        store = Store.open(settings.database_url)
        table = store.annotations_table()
        if table.empty:
            console.print(
                "[red]error:[/red] the store holds no reviews; add some with `striketracker crowd simulate` "
                "or `striketracker labelstudio sync`"
            )
            raise typer.Exit(code=1)
        n_dates = store.building_dates()
        attributes = store.building_attributes()
        t_count = max(n_dates.values())
        aggregator = GapDawidSkene()
        fit = aggregator.fit(table, t_count, building_ids=list(n_dates))
        report = volunteer_report(fit, table)
        reliability = dict(zip(report[COL_VOLUNTEER], report["accuracy"], strict=True))
        policy = RetirementPolicy()
        decisions = decide_all(evidence_from_fit(fit, table, reliability=reliability), policy)
        posteriors = []
        for i, decision in enumerate(decisions):
            dates = attributes.get(decision.building_id, {}).get("dates")
            posteriors.append(
                Posterior(
                    building_id=decision.building_id,
                    probs=tuple(float(p) for p in fit.gap_probs_[i]),
                    map_gap=decision.map_gap,
                    interval=_interval(dates, decision.map_gap),
                    confidence=decision.confidence,
                    n_reviews=decision.n_reviews,
                    status=decision.status,
                    model_version=None,
                )
            )
        round_id = store.start_round("aggregation", {"aggregator": repr(aggregator), "policy": repr(policy)})
        store.save_posteriors(posteriors, aggregator=repr(aggregator), round_id=round_id)
        store.record_decisions(decisions, round_id)
        store.finish_round(round_id, f"{len(decisions)} buildings decided")
    except ActiveLearningError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=1) from None

    out.mkdir(parents=True, exist_ok=True)
    report.to_csv(out / "volunteers.csv", index=False)
    plot_report(report, out / "volunteers.png")
    statuses = Counter(str(d.status) for d in decisions)
    flags = Counter(f for d in decisions for f in d.flags)
    table_out = Table(
        title=f"aggregation round {round_id}: {len(decisions)} buildings, {len(report)} volunteers"
    )
    table_out.add_column("what")
    table_out.add_column("count", justify="right")
    for key, value in sorted(statuses.items()):
        table_out.add_row(f"status {key}", str(value))
    for key, value in sorted(flags.items()):
        table_out.add_row(f"flag {key}", str(value))
    for key, value in sorted(Counter(report["flag"].replace("", "ok")).items()):
        table_out.add_row(f"volunteers {key}", str(value))
    console.print(table_out)
    console.print(f"volunteer report: {out / 'volunteers.csv'} and {out / 'volunteers.png'}")


def _interval(dates: list[str] | None, gap: int) -> tuple[dt.date | None, dt.date | None]:
    """The gap's date interval, or open ends for a building registered without its dates."""
    from model.timeline import gap_interval

    return gap_interval([dt.date.fromisoformat(d) for d in dates], gap) if dates else (None, None)


def register(app: typer.Typer) -> None:
    """Attach the ``crowd`` command group to the root app."""
    group = typer.Typer(help="Crowd reviews in the store: simulate them, aggregate them, report volunteers.")
    group.command("simulate")(simulate)
    group.command("aggregate")(aggregate)
    app.add_typer(group, name="crowd")
