"""``striketracker campaign init|round|run|status|unlock``: the active-learning campaign from the command line.

``init`` registers the chip cache's buildings (with their dates and spatial blocks) in the store and records the
campaign: its mode, labeler, acquisition and batch sizes, and where its model trains (the LightningCLI config;
``--no-model`` runs crowd only). ``round`` runs one round (or finishes an interrupted one), ``run`` several with
a progress bar, ``status`` shows where the campaign stands, ``unlock`` clears the lock of a loop process that is
gone for good. Everything is kept in the store of record and MLflow named by the settings; the labeler is built
from the campaign's record each time: ``simulated`` (the simulated volunteer pool over ``--scenario``'s truth,
its platform state under the work dir), ``labelstudio`` (the configured Label Studio server, one project per
campaign) or any ``package.module:factory``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

__all__ = ["register"]

console = Console()

_CONFIGS = Path("experiments") / "configs"


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}", soft_wrap=True)  # paths and commands stay copyable
    raise typer.Exit(code=1)


def init(
    name: Annotated[str, typer.Option(help="campaign name")] = "default",
    mode: Annotated[
        str, typer.Option(help="verify (humans settle) or estimate (the model may settle)")
    ] = "verify",
    labeler: Annotated[
        str, typer.Option(help="simulated, labelstudio or package.module:factory(scenario_dir, seed)")
    ] = "simulated",
    cache: Annotated[Path | None, typer.Option(help="chip cache (default: <work>/chips)")] = None,
    scenario: Annotated[
        Path | None, typer.Option(help="scenario folder (truth for simulated labelers)")
    ] = None,
    acquisition: Annotated[str, typer.Option(help="random, entropy, bald or eig")] = "eig",
    batch_size: Annotated[int, typer.Option(help="review requests per round")] = 100,
    seed_size: Annotated[int, typer.Option(help="buildings of the first, random batch")] = 100,
    random_share: Annotated[float, typer.Option(help="share of each batch drawn at random")] = 0.1,
    seed: Annotated[int, typer.Option(help="seed of the campaign's random choices")] = 0,
    config: Annotated[
        Path | None, typer.Option(help="training YAML (default: experiments/configs/district.yaml)")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="training epochs from scratch")] = None,
    warm_epochs: Annotated[
        int | None, typer.Option(help="training epochs warm-started from the champion")
    ] = None,
    no_model: Annotated[bool, typer.Option("--no-model", help="crowd only: no dating model")] = False,
    project: Annotated[int | None, typer.Option(help="Label Studio project (default: create one)")] = None,
    block_size_m: Annotated[float, typer.Option(help="spatial block size for batch diversity")] = 200.0,
) -> None:
    """Register the buildings of a chip cache and create a campaign in the store."""
    from active_learning.errors import ActiveLearningError
    from active_learning.loop import Campaign, CampaignConfig
    from active_learning.settings import Settings
    from active_learning.store import Store
    from model.datamodule import ChipArrays, spatial_blocks
    from model.errors import ModelError

    settings = Settings.from_env()
    cache = cache or settings.work_dir / "chips"
    train_config = config or _CONFIGS / "district.yaml"
    try:
        cfg = CampaignConfig(name=name, mode=mode, acquisition=acquisition, batch_size=batch_size,
                             seed_size=seed_size, random_share=random_share, seed=seed)  # fmt: skip
        chips = ChipArrays.open(cache)
        origins = chips.origins
        blocks = (
            dict(zip(chips.building_ids, spatial_blocks(origins, block_size_m).tolist(), strict=True))
            if origins is not None
            else {}
        )
        if not no_model and not train_config.is_file():
            raise typer.BadParameter(f"training config {train_config} not found; pass --config or --no-model")
        if labeler == "simulated" and scenario is None:
            raise typer.BadParameter("the simulated labeler needs --scenario (its truth)")
        store = Store.open(settings.database_url)
        new = Campaign.register_buildings(store, list(chips.building_ids), chips.dates, blocks)
        if labeler == "labelstudio" and project is None:
            project = _create_project(settings, name, cfg.max_reviews)
        setup = {
            "cache": str(Path(cache).resolve()),
            "scenario": str(Path(scenario).resolve()) if scenario else None,
            "train_config": None if no_model else str(train_config.resolve()),
            "epochs": epochs,
            "warm_epochs": warm_epochs,
            "project": project,
        }
        record = store.create_campaign(name, mode, labeler, {**cfg.as_dict(), "setup": setup})
    except (ActiveLearningError, ModelError, OSError) as exc:
        _fail(exc)
    console.print(
        f"campaign {record.name!r} ({record.mode}, labeler {record.labeler}): {len(chips.building_ids)} buildings "
        f"({new} new) in {store.url}; run it with `striketracker campaign run --name {name}`"
    )


def _create_project(settings: Any, name: str, overlap: int) -> int:
    from labeling import ProjectSettings
    from serving.labelstudio import label_studio_client

    client = label_studio_client(settings)
    try:
        return client.create_project(ProjectSettings(title=f"striketracker campaign {name}", overlap=overlap))
    finally:
        client.close()


def _campaign(name: str, quiet: bool = False) -> Any:
    """The campaign of the store's record, with its labeler and model."""
    from active_learning.champion import RegistryModel
    from active_learning.labelers import Labeler, QueueLabeler, load_labeler
    from active_learning.loop import Campaign, CampaignConfig
    from active_learning.settings import Settings
    from active_learning.store import Store

    settings = Settings.from_env()
    store = Store.open(settings.database_url)
    record = store.campaign(name)
    setup = dict(record.config.get("setup") or {})
    cfg = CampaignConfig.from_dict(record.config)
    scenario = Path(setup["scenario"]) if setup.get("scenario") else None
    folder = settings.work_dir / "campaigns" / name
    labeler: Labeler
    if record.labeler == "labelstudio":
        from labeling.queue import LabelStudioQueue
        from serving.labelstudio import label_studio_client, pseudonym_secret

        queue = LabelStudioQueue(
            label_studio_client(settings),
            int(setup["project"]),
            secret=pseudonym_secret(settings),
            public_base_url=settings.public_base_url,
        )
        labeler = QueueLabeler(queue)
    else:
        labeler = load_labeler(record.labeler, scenario, cfg.seed, state_dir=folder)
    model = None
    if setup.get("train_config"):
        model = RegistryModel(
            Path(setup["cache"]), Path(setup["train_config"]), settings.tracking(), folder / "models",
            epochs=setup.get("epochs"), warm_epochs=setup.get("warm_epochs"),
        )  # fmt: skip
    return Campaign(
        store, labeler, cfg, model=model, tracking=settings.tracking(), console=None if quiet else console,
        labeler_spec=record.labeler,
    )  # fmt: skip


def round_(name: Annotated[str, typer.Option(help="campaign name")] = "default") -> None:
    """Run one round (or finish the interrupted one): pull, decide, train, select, push."""
    from active_learning.errors import ActiveLearningError

    try:
        report = _campaign(name).run_round()
    except ActiveLearningError as exc:
        _fail(exc)
    _print_round(report)


def run(
    name: Annotated[str, typer.Option(help="campaign name")] = "default",
    rounds: Annotated[int, typer.Option(min=1, help="at most this many rounds")] = 10,
    budget: Annotated[int | None, typer.Option(help="stop once this many annotations are stored")] = None,
) -> None:
    """Run rounds until nothing is left to ask, the budget is spent or ``--rounds`` are done."""
    from active_learning.errors import ActiveLearningError

    try:
        campaign = _campaign(name, quiet=True)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task(f"campaign {name}", total=rounds)

            def show(report: Any) -> None:
                progress.update(
                    task,
                    advance=1,
                    description=(
                        f"campaign {name}: round {report.round_id}, {report.annotations} annotations, "
                        + ", ".join(f"{k} {v}" for k, v in sorted(report.statuses.items()))
                    ),
                )

            reports = campaign.run(rounds, budget=budget, on_round=show)
    except ActiveLearningError as exc:
        _fail(exc)
    if reports:
        _print_round(reports[-1])
        if reports[-1].done:
            console.print(
                "[green]nothing left to ask: every building is settled, contested or out of reviews[/green]"
            )


def _print_round(report: Any) -> None:
    table = Table(
        title=f"round {report.round_id}"
        + (f" (resumed after '{report.resumed_from}')" if report.resumed_from else "")
    )
    table.add_column("what")
    table.add_column("count", justify="right")
    for key, value in sorted(report.pull.items()):
        table.add_row(f"pulled: {key}", str(value))
    for key, value in sorted(report.statuses.items()):
        table.add_row(f"status {key}", str(value))
    table.add_row("requested this round", str(report.selected))
    table.add_row("annotations stored", str(report.annotations))
    table.add_row("champion", report.model_version or "-")
    table.add_row("seconds", f"{report.seconds:.1f}")
    console.print(table)


def status(name: Annotated[str, typer.Option(help="campaign name")] = "default") -> None:
    """Where the campaign stands: statuses, annotations, requests, champion, audit, lock."""
    from active_learning.errors import ActiveLearningError
    from active_learning.loop import campaign_status
    from active_learning.settings import Settings
    from active_learning.store import Store

    try:
        s = campaign_status(Store.open(Settings.from_env().database_url), name)
    except ActiveLearningError as exc:
        _fail(exc)
    table = Table(title=f"campaign {s.name} ({s.mode}, labeler {s.labeler})")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("rounds finished", str(s.rounds))
    table.add_row(
        "interrupted round", "-" if s.open_round is None else f"{s.open_round[0]} after '{s.open_round[1]}'"
    )
    for key, value in sorted(s.statuses.items()):
        table.add_row(f"buildings {key}", str(value))
    table.add_row("settled by the model alone", str(s.model_settled))
    table.add_row("annotations", str(s.annotations))
    for key, value in sorted(s.requests.items()):
        table.add_row(f"requests {key}", str(value))
    table.add_row("champion", s.champion or "-")
    if s.audit.get("accuracy") is not None:
        table.add_row(
            "audit accuracy (90% interval)",
            f"{s.audit['accuracy']:.3f} ({s.audit['lo90']:.3f}-{s.audit['hi90']:.3f}, n={int(s.audit['judged'])})",
        )
    table.add_row("quarantined items", str(s.quarantined))
    table.add_row("lock", s.lock or "free")
    console.print(table)


def unlock(name: Annotated[str, typer.Option(help="campaign name")] = "default") -> None:
    """Clear the lock of a loop process that is gone for good (a live one would lose its lock and stop)."""
    from active_learning.settings import Settings
    from active_learning.store import Store

    store = Store.open(Settings.from_env().database_url)
    holder = store.lock(name)
    if store.release_lock(name):
        console.print(f"released the lock of campaign {name!r} held by pid {holder.pid if holder else '?'}")
    else:
        console.print(f"campaign {name!r} was not locked")


def register(app: typer.Typer) -> None:
    """Attach the ``campaign`` command group to the root app."""
    group = typer.Typer(help="The active-learning campaign: init, round, run, status, unlock.")
    group.command("init")(init)
    group.command("round")(round_)
    group.command("run")(run)
    group.command("status")(status)
    group.command("unlock")(unlock)
    app.add_typer(group, name="campaign")
