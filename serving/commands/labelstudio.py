"""``striketracker labelstudio install|start|stop|status|sync``: the local Label Studio server (``setup`` and
``push`` join from :mod:`serving.commands.labelstudio_project`)."""

from __future__ import annotations

import time

import typer
from rich.console import Console

from active_learning.settings import Settings
from labeling import LabelingError
from serving.commands.labelstudio_project import register_project_commands
from serving.labelstudio import label_studio_client, label_studio_server, pseudonym_secret

__all__ = ["register"]

console = Console()


def _fail(exc: LabelingError) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Attach the ``labelstudio`` command group to the root app."""
    group = typer.Typer(help="Run the local Label Studio server (pinned release, isolated env, 127.0.0.1).")

    @group.command()
    def install() -> None:
        """Create Label Studio's isolated environment under the work dir (idempotent; ~90 s, ~1 GB cold)."""
        server = label_studio_server(Settings.from_env())
        start = time.monotonic()
        try:
            with console.status(
                f"installing label-studio=={server.config.version} into {server.config.env_dir}"
            ):
                env = server.install()
        except LabelingError as exc:
            _fail(exc)
        console.print(
            f"label-studio=={server.config.version} ready in {env} ({time.monotonic() - start:.1f} s)"
        )

    @group.command()
    def start() -> None:
        """Start the server (or reuse the running one) and wait until it is healthy."""
        server = label_studio_server(Settings.from_env())
        began = time.monotonic()
        try:
            with console.status(
                f"starting Label Studio on {server.config.url} (first start migrates, ~45 s)"
            ):
                server.install()
                status = server.start()
        except LabelingError as exc:
            _fail(exc)
        console.print(
            f"Label Studio healthy at {status.url} (pid {status.pid}, {time.monotonic() - began:.1f} s); "
            f"admin {server.config.admin_email}, password and token in {server.config.root.parent / 'secrets'}"
        )

    @group.command()
    def stop() -> None:
        """Stop the server started by this project (by its pid file)."""
        server = label_studio_server(Settings.from_env())
        stopped = server.stop()
        console.print("Label Studio stopped" if stopped else "Label Studio was not running")

    @group.command()
    def status() -> None:
        """Installed? running? healthy? who holds the port?"""
        server = label_studio_server(Settings.from_env())
        s = server.status()
        console.print(
            f"installed={s.installed} running={s.running} healthy={s.healthy} pid={s.pid} url={s.url}"
            + (f" port held by {s.port_owner}" if s.port_owner else "")
        )
        if not s.healthy:
            raise typer.Exit(code=1)

    @group.command()
    def sync(
        project: int = typer.Option(..., help="Label Studio project id"),
        full: bool = typer.Option(False, help="read every task again (the store dedupes what it has)"),
    ) -> None:
        """Pull new, edited and deleted annotations of a project into the store (cursor kept in the store)."""
        from active_learning.store import Store
        from serving.sync import sync_project

        settings = Settings.from_env()
        client = label_studio_client(settings)
        try:
            with console.status(f"pulling project {project} from {settings.label_studio_url}"):
                report = sync_project(
                    client,
                    Store.open(settings.database_url),
                    project,
                    secret=pseudonym_secret(settings),
                    full=full,
                )
        except LabelingError as exc:
            _fail(exc)
        finally:
            client.close()
        console.print(
            f"project {project}: {report.inserted} new, {report.updated} edited, {report.retracted} retracted, "
            f"{report.unchanged} unchanged, {report.quarantined} quarantined, {report.stale} stale, "
            f"{report.kept_retracted} arrived after their retraction"
        )
        if report.deleted_buildings:
            console.print(
                f"tasks deleted in Label Studio for {len(report.deleted_buildings)} buildings "
                f"(their reviews stay): {', '.join(report.deleted_buildings[:10])}"
            )
        for line in report.problems[:20]:
            console.print(f"[yellow]problem:[/yellow] {line}")

    register_project_commands(group)
    app.add_typer(group, name="labelstudio")
