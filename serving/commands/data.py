"""Data commands: generate a scenario, ingest imagery into chip stacks, run the demo."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Attach the data commands to the root app."""
