"""The demo command: the main job on embedded defaults (``make demo``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def demo(
    preset: Annotated[str, typer.Option(help="scenario preset: tiny, district or city")] = "district",
    seed: Annotated[int, typer.Option(help="scenario seed")] = 0,
    work_dir: Annotated[Path | None, typer.Option(help="work directory (default: settings)")] = None,
) -> None:
    """Generate a scenario, ingest it into chip stacks, write preview PNGs and a summary."""
    from experiments.demo import run_demo
    from serving.settings import Settings

    settings = Settings.from_env(work_dir=work_dir)
    run_demo(settings.work_dir, preset=preset, seed=seed)


def register(app: typer.Typer) -> None:
    """Attach the demo command to the root app."""
    app.command("demo")(demo)
