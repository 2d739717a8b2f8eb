"""``striketracker serve | export | report``: run the service, export the dated buildings, draw the figures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from active_learning.settings import Settings

__all__ = ["register"]

console = Console(stderr=True)


def _settings(**overrides: Any) -> Settings:
    from active_learning.settings import Settings

    try:
        return Settings.from_env(None, **overrides)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=2) from None


def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default: settings, 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: settings, 8000)")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Run the service: REST API, review page, chips, exports, Label Studio webhooks and ML backend, metrics."""
    import uvicorn

    from serving.app import create_app
    from serving.security import TOKEN_SECRET

    settings = _settings(api_host=host, api_port=port)
    app = create_app(settings)
    resources = app.state.resources
    with console.status("reading the store, the chip cache and the footprints"):
        snapshot = resources.catalog.snapshot()
        champion = resources.predictor.model_version(refresh=True)
    token_at = (
        "STRIKETRACKER_API_TOKEN"
        if settings.api_token.get_secret_value()
        else settings.secret_file(TOKEN_SECRET)
    )
    base = f"http://{settings.api_host}:{settings.api_port}"
    console.print(
        f"striketracker service on {base}: {len(snapshot.buildings)} dated buildings "
        f"({snapshot.coordinates} coordinates), ML backend model {champion or 'none (no champion yet)'}\n"
        f"  review page  {base}/review\n"
        f"  API schema   {base}/openapi.json\n"
        f"  write token  {token_at}"
    )
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_level=log_level,
        server_header=False,
        proxy_headers=False,
    )


def export(
    fmt: Annotated[str, typer.Option("--format", help="geojson, gpkg or csv")],
    out: Annotated[Path, typer.Option("--out", help="output file")],
    status: Annotated[list[str] | None, typer.Option(help="keep these statuses (repeatable)")] = None,
    flag: Annotated[
        list[str] | None, typer.Option(help="keep buildings with these flags (repeatable)")
    ] = None,
) -> None:
    """Write the dated buildings with their evidence for GIS (QGIS reads all three formats)."""
    from active_learning.errors import ActiveLearningError
    from active_learning.posterior import Status
    from active_learning.store import Store
    from model.errors import CacheError
    from serving.catalog import Catalog
    from serving.chips import ChipSource
    from serving.errors import ExportError
    from serving.export import FORMATS, export_frame, write_export

    if fmt not in FORMATS:
        console.print(f"[red]error:[/red] --format {fmt!r}: use one of {', '.join(FORMATS)}")
        raise typer.Exit(code=2)
    statuses = [s.value for s in Status]
    bad = [s for s in status or [] if s not in statuses]
    if bad:
        console.print(f"[red]error:[/red] --status {bad}: use {', '.join(statuses)}")
        raise typer.Exit(code=2)
    settings = _settings()
    try:
        store = Store.open(settings.database_url)
        chips = ChipSource(Path(settings.chip_cache or settings.work_dir / "chips"))
        snapshot = Catalog(store, chips).snapshot()
        try:
            sources = chips.stack().manifest.get("sources") or []
        except CacheError:
            sources = []
        chosen = snapshot.select(statuses=status or [], flags=flag or [])
        frame = export_frame(
            snapshot, store, settings.public_base_url, chosen, [s.get("sha256") for s in sources]
        )
        path = write_export(frame, out, fmt)  # type: ignore[arg-type]
    except (ExportError, ActiveLearningError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=1) from None
    note = f" ({snapshot.locations.note})" if snapshot.locations and snapshot.locations.note else ""
    typer.echo(f"{len(frame)} dated buildings written to {path} ({snapshot.coordinates} coordinates){note}")


def report(
    out: Annotated[Path | None, typer.Option(help="folder for the PNGs (default: <work>/reports)")] = None,
) -> None:
    """Draw the destruction timeline, the campaign curves and the volunteer quality as PNGs."""
    from active_learning.errors import ActiveLearningError
    from active_learning.store import Store
    from serving.catalog import Catalog
    from serving.chips import ChipSource
    from serving.report import plot_campaign, plot_timeline, plot_volunteers
    from serving.timeline import destruction_timeline

    settings = _settings()
    folder = out or settings.work_dir / "reports"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        store = Store.open(settings.database_url)
        snapshot = Catalog(
            store, ChipSource(Path(settings.chip_cache or settings.work_dir / "chips"))
        ).snapshot()
        written = [
            plot_timeline(destruction_timeline(snapshot.timeline_groups()), folder / "timeline.png"),
            plot_campaign(store, snapshot, folder / "campaign.png"),
        ]
        with console.status("fitting the crowd model for the volunteer report"):
            volunteers = plot_volunteers(store, folder / "volunteers.png")
    except (ActiveLearningError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=1) from None
    if volunteers is not None:
        written.append(volunteers)
    else:
        console.print("[yellow]no volunteer review in the store: volunteers.png not drawn[/yellow]")
    for path in written:
        typer.echo(str(path))


def register(app: typer.Typer) -> None:
    """Attach ``serve``, ``export`` and ``report`` to the root app."""
    app.command("serve")(serve)
    app.command("export")(export)
    app.command("report")(report)
