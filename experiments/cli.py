"""The experiments' commands of the ``striketracker`` CLI: ``scenario`` and ``demo``.

``serving`` (the CLI's home) and ``experiments`` never import each other (STYLE habit 3), so these commands reach
the CLI as a plugin: ``pyproject.toml`` names :func:`register` in the ``striketracker.commands`` entry-point
group, and ``serving.cli`` attaches every command group registered there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from experiments.scenario import PRESETS, ScenarioError, generate

__all__ = ["register"]


def scenario(
    preset: str = typer.Option("tiny", help=f"scenario size: one of {', '.join(PRESETS)}"),
    seed: int = typer.Option(0, min=0, help="random seed; the same seed gives byte-identical output"),
    out: Path = typer.Option(..., help="output folder (imagery/, clouds/, footprints.gpkg, truth.csv, ...)"),
) -> None:
    """Render a scenario: GeoTIFF timeline (UTM 37N), cloud masks, footprints and truth over Raqqa."""
    console = Console()
    try:
        summary = generate(preset, seed, out, progress=True)
    except ScenarioError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(code=2) from None
    c = summary.counts
    console.print(
        f"[green]wrote[/] {summary.out}: {c['buildings']} buildings ({c['unosat']} UNOSAT, "
        f"{c['intact_added']} added intact), {c['dates']} dates, "
        f"{c['final_damaged']} damaged / {c['final_destroyed']} destroyed, in {summary.seconds:.1f} s, "
        f"peak memory {summary.peak_rss_mb:.0f} MB"
    )


def demo(
    preset: Annotated[str, typer.Option(help="scenario preset: tiny, district or city")] = "district",
    seed: Annotated[int, typer.Option(help="scenario seed")] = 0,
    max_epochs: Annotated[
        int | None, typer.Option(min=1, help="override the config's training epochs (a quick look)")
    ] = None,
    work_dir: Annotated[Path | None, typer.Option(help="work directory (default: settings)")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: settings)")] = None,
) -> None:
    """Scenario, chip stacks, volunteer labels, a trained and promoted model, and every building dated."""
    from active_learning.settings import Settings
    from experiments.demo import run_demo

    settings = Settings.from_env(work_dir=work_dir, mlflow_tracking_uri=tracking_uri)
    run_demo(settings.work_dir, preset=preset, seed=seed, tracking=settings.tracking(), max_epochs=max_epochs)


def register(app: typer.Typer) -> None:
    """Attach ``scenario`` and ``demo`` to the root app."""
    app.command("scenario")(scenario)
    app.command("demo")(demo)
