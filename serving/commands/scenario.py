"""The ``striketracker scenario`` command: generate a synthetic Raqqa scenario folder."""

from __future__ import annotations

from pathlib import Path

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


def register(app: typer.Typer) -> None:
    """Attach the ``scenario`` command to the root app."""
    app.command("scenario")(scenario)
