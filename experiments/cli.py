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
    workers: int | None = typer.Option(
        None, min=1, help="processes rendering tiles (default: one per CPU, at most 4, for large scenes)"
    ),
) -> None:
    """Render a scenario: GeoTIFF timeline (UTM 37N), cloud masks, footprints and truth over Raqqa."""
    console = Console()
    try:
        summary = generate(preset, seed, out, progress=True, workers=workers)
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
    mode: Annotated[
        str, typer.Option(help="estimate (the model may settle confident buildings) or verify")
    ] = "estimate",
    headless: Annotated[
        bool, typer.Option("--headless", help="stop the services at the end instead of waiting for Ctrl-C")
    ] = False,
    budget: Annotated[
        int | None, typer.Option(min=1, help="stop once this many annotations are stored (default: preset's)")
    ] = None,
    rounds: Annotated[
        int | None, typer.Option(min=1, help="at most this many rounds (default: preset's)")
    ] = None,
    work_dir: Annotated[Path | None, typer.Option(help="work directory (default: settings)")] = None,
) -> None:
    """A real campaign: scenario, Label Studio and the service, volunteers answering in Label Studio, the
    model trained and promoted in MLflow, exports and figures. Services stay up until Ctrl-C (not with
    --headless or without a terminal)."""
    from active_learning.errors import ActiveLearningError
    from active_learning.settings import Settings
    from experiments.demo import PLANS, run_demo
    from experiments.demo_services import DemoServiceError
    from labeling import LabelingError

    console = Console()
    if preset not in PLANS:
        console.print(f"[red]error:[/] --preset {preset!r}: use one of {', '.join(PLANS)}")
        raise typer.Exit(code=2)
    if mode not in ("estimate", "verify"):
        console.print(f"[red]error:[/] --mode {mode!r}: use estimate or verify")
        raise typer.Exit(code=2)
    settings = Settings.from_env(work_dir=work_dir)
    try:
        run_demo(
            settings, preset=preset, seed=seed, mode=mode, console=console, headless=headless,
            budget=budget, max_rounds=rounds,
        )  # fmt: skip
    except (DemoServiceError, LabelingError, ActiveLearningError, ScenarioError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(code=1) from None


def register(app: typer.Typer) -> None:
    """Attach ``scenario`` and ``demo`` to the root app."""
    app.command("scenario")(scenario)
    app.command("demo")(demo)
