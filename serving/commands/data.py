"""The demo command: the main job on embedded defaults (``make demo``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


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
    from experiments.demo import run_demo
    from serving.settings import Settings

    settings = Settings.from_env(work_dir=work_dir, mlflow_tracking_uri=tracking_uri)
    run_demo(settings.work_dir, preset=preset, seed=seed, tracking=settings.tracking(), max_epochs=max_epochs)


def register(app: typer.Typer) -> None:
    """Attach the demo command to the root app."""
    app.command("demo")(demo)
