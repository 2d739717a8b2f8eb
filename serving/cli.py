"""The ``striketracker`` command line: one typer app, one module of commands per area under serving/commands.

Command groups of other packages join as plugins: every ``register(app)`` named in the
``striketracker.commands`` entry-point group (``pyproject.toml``) is called, which is how ``experiments`` adds
``scenario`` and ``demo`` without ``serving`` importing it.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import typer

from serving.commands import campaign, crowd, ingest, labelstudio, model, service

__all__ = ["PLUGIN_GROUP", "app", "build_app"]

PLUGIN_GROUP = "striketracker.commands"


def build_app() -> typer.Typer:
    """The root app with this package's commands and every plugin's."""
    root = typer.Typer(
        name="striketracker",
        help="Date the destruction of buildings from satellite image timelines.",
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,
    )
    for module in (labelstudio, ingest, model, crowd, campaign, service):
        module.register(root)
    for plugin in entry_points(group=PLUGIN_GROUP):
        plugin.load()(root)
    return root


app = build_app()


if __name__ == "__main__":
    app()
