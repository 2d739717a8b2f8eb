"""The end-to-end demo behind ``make demo``: a real active-learning campaign through a local Label Studio.

1. the scenario (reused when unchanged) and its chip stacks (reused when unchanged), with ``preview.png``
   (imagery across dates) and ``chips.png`` (chip stacks of a few buildings with their true destruction gap);
2. a fresh store of record with every building, the local Label Studio (``striketracker labelstudio start``)
   and the striketracker service (``striketracker serve`` on a free loopback port), and the campaign's Label
   Studio project (``striketracker labelstudio setup``: overlap, the webhook to the service, the service as
   the project's ML backend);
3. the campaign (:class:`active_learning.loop.Campaign`): a random seed batch, then rounds that pull the
   volunteers' answers, aggregate them with the dating model as a witness, settle what is certain, retrain,
   register and promote the model in MLflow when enough new reviews arrived, and push the most informative
   buildings; simulated volunteers answer through the real Label Studio API, each as their own Label Studio
   user (:mod:`experiments.volunteer_bridge`), until the annotation budget, the settle target or the round
   cap is reached;
4. the dated buildings exported by the service (``/api/export.{geojson,gpkg,csv}``, what ``striketracker export``
   writes) and drawn
   (``striketracker report``: timeline, campaign curves, volunteer quality), the accuracy of every
   building's dated gap against the scenario's truth, and where to look: Label Studio, the review page,
   ``mlflow ui``, the exports.

Everything of one run is written under ``<work_dir>/demo/<preset>-<seed>/`` (store, MLflow, exports, reports,
logs, ``summary.json``), fresh on every run; the scenario and its chips are the work directory's shared caches
(``scenarios/``, ``chips/``, also the benchmarks'), reused when unchanged. The
services are left running until Ctrl-C, unless ``headless`` or the standard input is not a terminal.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from active_learning.champion import RegistryModel
from active_learning.loop import Campaign, CampaignConfig, RoundReport
from active_learning.posterior import Status
from active_learning.settings import Settings
from active_learning.simulated_labeler import SimulatedPoolLabeler
from active_learning.store import Store
from experiments.benchmarks.dating import CONFIGS
from experiments.benchmarks.ingest import ensure_scenario, folder_lock
from experiments.demo_services import DemoServiceError, DemoServices, free_port, port_free
from experiments.plots import plot_chip_stacks
from experiments.scenario import load_truth
from experiments.scenario.preview import write_preview
from experiments.volunteer_bridge import BridgeCounts, LabelStudioVolunteers
from labeling import LabelStudioClient, legacy_token_from_secret
from labeling.queue import LabelStudioQueue
from model.chips import ingest
from model.datamodule import ChipArrays, spatial_blocks

__all__ = ["PLANS", "DemoPlan", "DemoSummary", "run_demo"]


@dataclass(frozen=True)
class DemoPlan:
    """How big the demo's campaign is for one preset.

    Attributes:
        batch / seed_size: review requests per round / buildings of the random seed batch.
        budget: stop once this many annotations are stored.
        settle_target: stop once this share of the buildings is settled.
        max_rounds: a cap on rounds.
        epochs / warm_epochs: training epochs from scratch / warm-started from the champion.
        first_model_labels / retrain_min_labels / min_promotion_audit: when the campaign trains and promotes.
        pool_size: simulated volunteers (each a Label Studio user).
    """

    batch: int
    seed_size: int
    budget: int
    settle_target: float
    max_rounds: int
    epochs: int
    warm_epochs: int
    first_model_labels: int
    retrain_min_labels: int
    min_promotion_audit: int
    pool_size: int


PLANS = {
    "tiny": DemoPlan(batch=12, seed_size=20, budget=120, settle_target=0.9, max_rounds=6, epochs=12,
                     warm_epochs=6, first_model_labels=12, retrain_min_labels=12, min_promotion_audit=3,
                     pool_size=10),
    "district": DemoPlan(batch=250, seed_size=250, budget=1500, settle_target=0.9, max_rounds=6, epochs=10,
                         warm_epochs=5, first_model_labels=150, retrain_min_labels=400, min_promotion_audit=20,
                         pool_size=40),
    "city": DemoPlan(batch=1500, seed_size=1500, budget=9000, settle_target=0.9, max_rounds=6, epochs=12,
                     warm_epochs=6, first_model_labels=1000, retrain_min_labels=3000, min_promotion_audit=50,
                     pool_size=60),
}  # fmt: skip
"""Campaign sizes per preset (``district`` finishes in under 15 minutes on a 2-core CPU machine)."""

CAMPAIGN = "demo"


@dataclass(frozen=True)
class DemoSummary:
    """Figures of one demo run, also written to ``summary.json``.

    Accuracies are of every building's dated gap (the campaign's latest decision: the crowd with the model as
    a witness) against the scenario's truth.
    """

    preset: str
    seed: int
    mode: str
    rounds: int
    buildings: int
    dates: int
    annotations: int
    annotations_via_labelstudio: int
    labelstudio_users: int
    settled: int
    contested: int
    statuses: dict[str, int]
    exact_gap_accuracy: float
    within1_gap_accuracy: float
    settled_exact_gap_accuracy: float
    champion: str
    label_studio_url: str
    review_url: str
    mlflow_ui: str
    exports: dict[str, str]
    reports: list[str]
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(
    settings: Settings,
    preset: str = "district",
    seed: int = 0,
    *,
    mode: str = "estimate",
    console: Console | None = None,
    headless: bool = False,
    budget: int | None = None,
    max_rounds: int | None = None,
) -> DemoSummary:
    """Run the demo (module docstring) and write ``summary.json``.

    Args:
        settings: work dir and Label Studio (the store, MLflow, chip cache and service port are the demo's own).
        preset / seed: the scenario.
        mode: the campaign's mode, ``estimate`` (the model may settle confident buildings) or ``verify``.
        console: where progress goes.
        headless: stop the services at the end instead of waiting for Ctrl-C.
        budget / max_rounds: override the preset's annotation budget and round cap.
    """
    console = console or Console()
    plan = PLANS.get(preset, PLANS["district"])
    plan = replace(plan, budget=budget or plan.budget, max_rounds=max_rounds or plan.max_rounds)
    timings: dict[str, float] = {}
    demo_dir = settings.work_dir / "demo"
    scenario_dir, cache_dir = _prepare_imagery(demo_dir, preset, seed, console, timings)
    root = demo_dir / f"{preset}-{seed}"
    for stale in ("store.db", "mlflow.db", "mlartifacts", "models", "exports", "reports"):
        path = root / stale
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    settings = _demo_settings(settings, root, cache_dir)
    chips = ChipArrays.open(cache_dir)
    store = Store.open(settings.database_url)
    origins = chips.origins
    blocks = (
        dict(zip(chips.building_ids, spatial_blocks(origins, 200.0).tolist(), strict=True))
        if origins is not None
        else {}
    )
    Campaign.register_buildings(store, list(chips.building_ids), chips.dates, blocks)

    services = DemoServices(settings, root / "logs")
    try:
        summary = _campaign_with_services(
            services, settings, store, chips, scenario_dir, root, preset, seed, mode, plan, console, timings
        )
        _wait_for_interrupt(console, headless)
    finally:
        with console.status(
            "stopping the service" + (" and Label Studio" if services.started_label_studio else "")
        ):
            services.stop()
    return summary


def _prepare_imagery(
    demo_dir: Path, preset: str, seed: int, console: Console, timings: dict[str, float]
) -> tuple[Path, Path]:
    """The scenario and its chip stacks, with two figures.

    Both live in the work directory's shared caches (``scenarios/<preset>-<seed>``, ``chips/<preset>-<seed>``),
    the same folders the benchmarks use, so a city generated for one (half an hour) is reused by the other;
    both are reused when unchanged and locked while being made.
    """
    work = demo_dir.parent
    scenario_dir = work / "scenarios" / f"{preset}-{seed}"
    cache_dir = work / "chips" / f"{preset}-{seed}"
    started = time.perf_counter()
    if (scenario_dir / "scenario.json").exists():
        console.print(f"[dim]reusing scenario {scenario_dir}[/dim]")
    else:
        console.print(f"[bold]scenario[/bold] generating {preset} (seed {seed}) into {scenario_dir}")
    ensure_scenario(preset, seed, work)
    timings["scenario"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    console.print(f"[bold]ingest[/bold] imagery into chip stacks at {cache_dir}")
    with (
        folder_lock(cache_dir),
        Progress(
            TextColumn("cutting chips"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar,
    ):
        task = bar.add_task("ingest", total=None)
        stack = ingest(
            scenario_dir,
            scenario_dir / "footprints.gpkg",
            cache_dir,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    timings["ingest"] = round(time.perf_counter() - started, 1)
    write_preview(scenario_dir, demo_dir / f"{preset}-{seed}" / "preview.png")
    plot_chip_stacks(stack, demo_dir / f"{preset}-{seed}" / "chips.png", load_truth(scenario_dir).true_gaps())
    return scenario_dir, cache_dir


def _demo_settings(settings: Settings, root: Path, cache_dir: Path) -> Settings:
    """The demo's own store, MLflow and chip cache; a free port for the service and, when the configured
    one is taken by something else, for Label Studio."""
    values = settings.model_dump()
    port = free_port()
    url = settings.label_studio_url
    ls_port = urlsplit(url).port or 8089
    ours = settings.work_dir / "labelstudio" / "label-studio.pid"  # LabelStudioServer's pid file
    if not port_free(ls_port) and not ours.exists():
        url = f"http://127.0.0.1:{free_port()}"
    values.update(
        database_url=f"sqlite:///{root / 'store.db'}",
        mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        mlflow_artifact_root=str(root / "mlartifacts"),
        chip_cache=cache_dir,
        api_port=port,
        public_base_url=f"http://127.0.0.1:{port}",
        ml_backend_url=f"http://127.0.0.1:{port}",
        label_studio_url=url,
        cors_origins=(),
    )
    return Settings.model_validate(values)


def _campaign_with_services(
    services: DemoServices,
    settings: Settings,
    store: Store,
    chips: ChipArrays,
    scenario_dir: Path,
    root: Path,
    preset: str,
    seed: int,
    mode: str,
    plan: DemoPlan,
    console: Console,
    timings: dict[str, float],
) -> DemoSummary:
    started = time.perf_counter()
    with console.status(
        f"starting Label Studio at {settings.label_studio_url} (a fresh data dir migrates, ~45 s)"
    ):
        services.start_label_studio()
    with console.status(f"starting the service at {services.service_url}"):
        services.start_service()
    title = f"striketracker demo {preset}-{seed}"
    admin = LabelStudioClient(settings.label_studio_url, _api_token(settings))
    old = admin.find_project(title)
    if old is not None:
        admin.delete_project(old)  # a previous run's tasks belong to a store that is gone
    with console.status("creating the Label Studio project, its webhook and ML backend"):
        services.setup_project(title, overlap=5)
    project_id = admin.find_project(title)
    if project_id is None:
        raise DemoServiceError(
            f"`striketracker labelstudio setup` created no project titled {title!r}; log {root / 'logs' / 'setup.log'}"
        )
    timings["services"] = round(time.perf_counter() - started, 1)
    console.print(
        f"[bold]services[/bold] Label Studio {settings.label_studio_url}/projects/{project_id}, "
        f"service {services.service_url} ({timings['services']:.0f} s)"
    )

    secret = settings.secret_file("volunteer_pseudonym").read_text().strip().encode()
    queue = LabelStudioQueue(admin, project_id, secret=secret, public_base_url=settings.public_base_url)
    pool = SimulatedPoolLabeler.from_scenario(scenario_dir, seed, pool_size=plan.pool_size)
    password_key = settings.secret_file("demo_volunteer_passwords").read_text().strip()
    bridge = LabelStudioVolunteers(
        queue,
        pool,
        invite_token=admin.invite_token(),
        password=lambda vid: "V-" + hashlib.sha256(f"{password_key}:{vid}".encode()).hexdigest()[:24],
    )
    config = CampaignConfig(
        name=CAMPAIGN, mode=mode, acquisition="eig", batch_size=plan.batch, seed_size=plan.seed_size,
        seed=seed, first_model_labels=plan.first_model_labels, retrain_min_labels=plan.retrain_min_labels,
        min_promotion_audit=plan.min_promotion_audit, max_wait_s=120.0,
    )  # fmt: skip
    train_yaml = CONFIGS / f"{preset}.yaml"
    model = RegistryModel(
        Path(str(settings.chip_cache)),
        train_yaml if train_yaml.is_file() else CONFIGS / "tiny.yaml",
        settings.tracking(), root / "models", epochs=plan.epochs, warm_epochs=plan.warm_epochs,
    )  # fmt: skip
    campaign = Campaign(
        store, bridge, config, model=model, tracking=settings.tracking(), console=console,
        labeler_spec="labelstudio",
    )  # fmt: skip
    started = time.perf_counter()
    try:
        reports = _run_rounds(campaign, bridge, plan, len(chips.building_ids), console)
    finally:
        bridge.close()
    timings["campaign"] = round(time.perf_counter() - started, 1)
    timings["volunteer_signups"] = round(bridge.counts.signup_s, 1)
    timings["volunteer_submissions"] = round(bridge.counts.submit_s, 1)

    started = time.perf_counter()
    exports: dict[str, str] = {}
    with console.status("exporting the dated buildings (GeoJSON, GeoPackage, CSV) and drawing the reports"):
        for fmt, name in (
            ("geojson", "buildings.geojson"),
            ("gpkg", "buildings.gpkg"),
            ("csv", "buildings.csv"),
        ):
            exports[fmt] = str(services.download(f"/api/export.{fmt}", root / "exports" / name))
        reports_out = services.run("report", "--out", str(root / "reports"), log="report.log")
    timings["exports"] = round(time.perf_counter() - started, 1)
    summary = _summary(
        store, scenario_dir, chips, reports, bridge.counts, model.champion() or "-", preset, seed, mode,
        settings, services, project_id, exports, [line for line in reports_out.splitlines() if line.strip()],
        timings,
    )  # fmt: skip
    (root / "summary.json").write_text(json.dumps(asdict(summary), indent=2))
    _print_summary(console, summary, root)
    admin.close()
    return summary


def _api_token(settings: Settings) -> str:
    """The admin's Label Studio token as ``striketracker labelstudio start`` creates it (the configured token,
    else the legacy token derived from the generated secret; the same rule as ``serving.labelstudio``)."""
    return settings.label_studio_token.get_secret_value() or legacy_token_from_secret(
        settings.secret_file("label_studio_token").read_text().strip()
    )


def _run_rounds(
    campaign: Campaign, bridge: LabelStudioVolunteers, plan: DemoPlan, n_buildings: int, console: Console
) -> list[RoundReport]:
    """Rounds until the budget, the settle target, nothing left to ask, or the round cap."""
    reports: list[RoundReport] = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        rounds = progress.add_task("campaign rounds", total=plan.max_rounds)
        answers = progress.add_task("volunteers answering in Label Studio", total=plan.budget)

        def submitted(counts: BridgeCounts) -> None:
            progress.update(
                answers,
                completed=min(counts.submitted, plan.budget),
                description=f"volunteers answering in Label Studio ({counts.users} users)",
            )

        bridge.on_submit = submitted
        for _ in range(plan.max_rounds):
            report = campaign.run_round()
            reports.append(report)
            settled = report.statuses.get(Status.SETTLED.value, 0) + report.statuses.get(
                Status.EXPERT.value, 0
            )
            progress.update(
                rounds,
                advance=1,
                description=(
                    f"round {report.round_id}: {report.annotations} annotations, {settled}/{n_buildings} "
                    f"settled, champion {report.model_version or '-'}"
                ),
            )
            if (
                report.done
                or report.annotations >= plan.budget
                or settled >= plan.settle_target * n_buildings
            ):
                break
    return reports


def _summary(
    store: Store,
    scenario_dir: Path,
    chips: ChipArrays,
    reports: list[RoundReport],
    counts: BridgeCounts,
    champion: str,
    preset: str,
    seed: int,
    mode: str,
    settings: Settings,
    services: DemoServices,
    project_id: int,
    exports: dict[str, str],
    report_pngs: list[str],
    timings: dict[str, float],
) -> DemoSummary:
    truth = load_truth(scenario_dir).true_gaps()
    latest = store.latest_decisions()
    annotations = store.annotations()
    hits = [(latest[b].decision.map_gap, truth[b], latest[b].decision.status) for b in latest if b in truth]
    exact = [gap == true for gap, true, _ in hits]
    within1 = [abs(gap - true) <= 1 for gap, true, _ in hits]
    settled_exact = [gap == true for gap, true, s in hits if s in (Status.SETTLED, Status.EXPERT)]
    statuses = dict(reports[-1].statuses) if reports else {}
    return DemoSummary(
        preset=preset,
        seed=seed,
        mode=mode,
        rounds=len(reports),
        buildings=len(chips.building_ids),
        dates=len(chips.dates),
        annotations=len(annotations),
        annotations_via_labelstudio=sum(1 for a in annotations if a.source == "labelstudio"),
        labelstudio_users=counts.users,
        settled=statuses.get(Status.SETTLED.value, 0) + statuses.get(Status.EXPERT.value, 0),
        contested=statuses.get(Status.CONTESTED.value, 0),
        statuses=statuses,
        exact_gap_accuracy=round(_mean(exact), 4),
        within1_gap_accuracy=round(_mean(within1), 4),
        settled_exact_gap_accuracy=round(_mean(settled_exact), 4),
        champion=champion,
        label_studio_url=f"{settings.label_studio_url.rstrip('/')}/projects/{project_id}",
        review_url=f"{services.service_url}/review",
        mlflow_ui=f"uv run mlflow ui --backend-store-uri {settings.mlflow_tracking_uri}",
        exports=exports,
        reports=report_pngs,
        seconds=timings,
    )


def _mean(values: list[bool]) -> float:
    return sum(values) / len(values) if values else 0.0


def _print_summary(console: Console, summary: DemoSummary, root: Path) -> None:
    table = Table(
        title=f"striketracker demo: {summary.preset} scenario, seed {summary.seed} ({summary.mode})"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    figures: dict[str, Any] = asdict(summary)
    for key in ("rounds", "buildings", "annotations", "annotations_via_labelstudio", "labelstudio_users",
                "settled", "contested", "exact_gap_accuracy", "within1_gap_accuracy",
                "settled_exact_gap_accuracy", "champion"):  # fmt: skip
        table.add_row(key, str(figures[key]))
    table.add_row("seconds", ", ".join(f"{k} {v:.0f}" for k, v in summary.seconds.items()))
    console.print(table)
    console.print(
        f"[bold]where to look[/bold]\n"
        f"  Label Studio   {summary.label_studio_url}  (admin password in {root.parents[1] / 'secrets'})\n"
        f"  review page    {summary.review_url}\n"
        f"  MLflow         {summary.mlflow_ui}\n"
        + "".join(f"  export {fmt:<7} {path}\n" for fmt, path in summary.exports.items())
        + "".join(f"  report         {png}\n" for png in summary.reports)
        + f"  summary        {root / 'summary.json'}"
    )


def _wait_for_interrupt(console: Console, headless: bool) -> None:
    """Keep the services up until Ctrl-C, unless headless or not attached to a terminal."""
    if headless or not sys.stdin.isatty():
        return
    console.print("[bold green]services running[/bold green]: press Ctrl-C to stop them")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopping")
