"""``striketracker labelstudio setup | push``: the campaign's Label Studio project, and buildings into it.

``setup`` creates the project (or reuses the one with the same title), sets the overlap, registers the webhook
to the service (``/webhooks/labelstudio``, with the shared secret) and connects the service as the project's
ML backend, then records the project in ``<work>/labelstudio/project.json`` so later commands need no id.
``push`` sends buildings as tasks, with the store's latest posterior as the (hidden) prediction whose score
drives uncertainty sampling: buildings named with ``--building``, or the first ``--queue N`` of the labeling
queue (the least confident open buildings). A building already in the project is not pushed again. Nothing
about the tasks is kept on this side: ``labelstudio sync`` learns them from Label Studio (its cursor lives in
the store).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["ProjectRecord", "project_record_path", "read_project_record", "register_project_commands"]

console = Console(stderr=True)


@dataclass(frozen=True)
class ProjectRecord:
    """What ``setup`` did, kept for later commands."""

    project_id: int
    title: str
    service_url: str
    ml_backend_id: int | None


def project_record_path(work_dir: Path) -> Path:
    return work_dir / "labelstudio" / "project.json"


def read_project_record(work_dir: Path) -> ProjectRecord | None:
    """The recorded project, or None when ``setup`` has not run."""
    path = project_record_path(work_dir)
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    return ProjectRecord(
        int(raw["project_id"]), str(raw["title"]), str(raw["service_url"]), raw.get("ml_backend_id")
    )


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def setup(
    title: Annotated[str, typer.Option(help="project title (an existing project with it is reused)")] = (
        "striketracker building timelines"
    ),
    overlap: Annotated[int, typer.Option(min=1, max=20, help="independent reviews per building")] = 3,
    service_url: Annotated[
        str | None,
        typer.Option(help="URL the Label Studio server reaches the service at (default: settings)"),
    ] = None,
    ml_backend: Annotated[bool, typer.Option(help="connect the service as the project's ML backend")] = True,
) -> None:
    """Create or reuse the project; set overlap, the webhook to the service and the ML backend connection."""
    from active_learning.settings import Settings
    from labeling import LabelingError, ProjectSettings
    from labeling.project import connect_ml_backend, ensure_webhook, set_overlap
    from serving.labelstudio import api_token, label_studio_client, webhook_secret

    settings = Settings.from_env()
    service = (service_url or settings.ml_backend_url).rstrip("/")
    client = label_studio_client(settings)
    token, secret = api_token(settings), webhook_secret(settings)
    try:
        project_id = client.find_project(title)
        created = project_id is None
        if project_id is None:
            project_id = client.create_project(ProjectSettings(title=title, overlap=overlap))
        else:
            set_overlap(settings.label_studio_url, token, project_id, overlap)
        hook_id, _ = ensure_webhook(
            settings.label_studio_url, token, project_id, f"{service}/webhooks/labelstudio", secret
        )
        backend = None
        if ml_backend:
            with console.status(
                f"connecting the ML backend at {service} (Label Studio calls /health, /setup)"
            ):
                backend = connect_ml_backend(settings.label_studio_url, token, project_id, service, secret)
    except LabelingError as exc:
        console.print(f"[red]error:[/red] {exc}")
        if ml_backend:
            console.print(
                f"is the service running (`striketracker serve`) and reachable from Label Studio at {service}?"
            )
        raise typer.Exit(code=1) from None
    finally:
        client.close()
    record = ProjectRecord(project_id, title, service, backend.backend_id if backend else None)
    _write_atomic(project_record_path(settings.work_dir), json.dumps(record.__dict__, indent=1))
    console.print(
        f"project {project_id} ({'created' if created else 'reused'}): '{title}', overlap {overlap}, "
        f"webhook {hook_id} -> {service}/webhooks/labelstudio"
        + (
            f", ML backend {backend.backend_id} at {service} ({backend.state or '?'}, model "
            f"{backend.model_version or '?'})"
            if backend
            else ""
        )
    )
    typer.echo(f"{settings.label_studio_url.rstrip('/')}/projects/{project_id}")


def push(
    building: Annotated[list[str] | None, typer.Option(help="building id to push (repeatable)")] = None,
    queue: Annotated[int, typer.Option(min=0, help="push the N least confident open buildings")] = 0,
    project: Annotated[
        int | None, typer.Option(help="project id (default: the one `setup` recorded)")
    ] = None,
) -> None:
    """Send buildings to Label Studio as tasks, with the store's posterior as their prediction score."""
    from active_learning.settings import Settings
    from active_learning.store import Store
    from labeling import LabelingError
    from serving.catalog import Catalog
    from serving.chips import ChipSource
    from serving.push import task_specs
    from serving.routes.campaign import review_queue

    settings = Settings.from_env()
    if project is None:
        record = read_project_record(settings.work_dir)
        if record is None:
            console.print(
                "[red]error:[/red] no project recorded; run `striketracker labelstudio setup` or pass --project"
            )
            raise typer.Exit(code=2)
        project = record.project_id
    if not building and not queue:
        console.print(
            "[red]error:[/red] name buildings with --building ID or take --queue N of the labeling queue"
        )
        raise typer.Exit(code=2)
    store = Store.open(settings.database_url)
    snapshot = Catalog(store, ChipSource(Path(settings.chip_cache or settings.work_dir / "chips"))).snapshot()
    ids = list(building or []) + [b.building_id for b in review_queue(snapshot, "labeling")[:queue]]
    specs, version, problems = task_specs(store, snapshot, ids)
    for line in problems:
        console.print(f"[yellow]skipped:[/yellow] {line}")
    if not specs:
        console.print("[red]error:[/red] no building to push")
        raise typer.Exit(code=1)
    from serving.labelstudio import label_studio_client

    client = label_studio_client(settings)
    try:
        result = client.push(
            project,
            specs,
            public_base_url=settings.public_base_url,
            model_version=version,
        )
    except LabelingError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=1) from None
    finally:
        client.close()
    typer.echo(
        f"project {project}: {len(result.created)} tasks created, {len(result.existing)} already there, "
        f"{result.predictions} predictions ({version})"
    )


def register_project_commands(group: typer.Typer) -> None:
    """Attach ``setup`` and ``push`` to the ``labelstudio`` group."""
    group.command("setup")(setup)
    group.command("push")(push)
