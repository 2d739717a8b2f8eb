"""The project calls the resilience tests run in a child process (see ``tests/resilience/child.py``)."""

from __future__ import annotations

from pathlib import Path


def ingest(imagery: str, footprints: str, out: str, force: str = "") -> None:
    """Cut the chip cache ``out`` (``force="1"``: rebuild even when it matches)."""
    from model.chips import ingest as cut

    cut(Path(imagery), Path(footprints), Path(out), warn=False, force=bool(force))


def export(frame: str, out: str, fmt: str) -> None:
    """Write the GeoJSON ``frame`` as an export in ``fmt`` to ``out``."""
    import geopandas as gpd

    from serving.export import write_export

    write_export(gpd.read_file(frame), Path(out), fmt)  # type: ignore[arg-type]


def sync(url: str, token_file: str, project: str, store: str, secret: str) -> None:
    """One ``labelstudio sync`` pass of ``project`` into the store at URL ``store``."""
    from active_learning.store import Store
    from labeling import LabelStudioClient
    from serving.sync import sync_project

    client = LabelStudioClient(url, Path(token_file).read_text())
    try:
        sync_project(client, Store.open(store), int(project), secret=secret.encode())
    finally:
        client.close()
