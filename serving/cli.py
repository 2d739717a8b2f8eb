"""The ``striketracker`` command line: one typer app, one module of commands per area under serving/commands."""

from __future__ import annotations

import typer

from serving.commands import crowd, data, ingest, labelstudio, model, scenario

__all__ = ["app"]

app = typer.Typer(
    name="striketracker",
    help="Date the destruction of buildings from satellite image timelines.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

for module in (data, scenario, labelstudio, ingest, model, crowd):
    module.register(app)


if __name__ == "__main__":
    app()
