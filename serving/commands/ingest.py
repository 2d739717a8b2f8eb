"""The ``striketracker ingest`` command: imagery and footprints into a memory-mapped chip cache."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from model.chips import IngestParams, ingest
from model.errors import IngestWarning, ModelError
from model.registration import REGISTRATION_FILE, load_or_estimate

__all__ = ["ingest_command", "register"]


def register(app: typer.Typer) -> None:
    """Attach ``ingest`` to the root app."""
    app.command("ingest")(ingest_command)


def ingest_command(
    imagery: Path = typer.Argument(..., help="folder of GeoTIFFs, a scenario folder, or a manifest CSV"),
    footprints: Path = typer.Argument(..., help="building footprints: GeoJSON, GeoPackage or Shapefile"),
    out: Path = typer.Option(..., "--out", help="chip cache folder (reused when the inputs are unchanged)"),
    chip_size: int = typer.Option(64, help="chip side in pixels"),
    resolution: float = typer.Option(0.5, help="working pixel size in metres"),
    crs: str | None = typer.Option(
        None, help="working CRS, e.g. EPSG:32637 (default: UTM of the footprints)"
    ),
    point_size: float = typer.Option(10.0, help="side in metres of the square a point footprint becomes"),
    id_column: str | None = typer.Option(None, help="footprint column with the building ids"),
    workers: int = typer.Option(2, help="threads reading dates in parallel"),
    force: bool = typer.Option(False, "--force", help="rebuild even when the cache matches the inputs"),
) -> None:
    """Align every date on one grid and cut a chip stack per building into OUT (see docs/CONTRACTS.md)."""
    console = Console(stderr=True)
    params = IngestParams(
        chip_size=chip_size,
        resolution=resolution,
        crs=crs,
        point_size_m=point_size,
        id_column=id_column,
        workers=workers,
    )
    cut = False
    columns = (
        TextColumn("[bold]cutting chips"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("buildings"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with warnings.catch_warnings(record=True) as caught, Progress(*columns, console=console) as bar:
        warnings.simplefilter("always", IngestWarning)
        task = bar.add_task("chips", total=None)

        def progress(done: int, total: int) -> None:
            nonlocal cut
            cut = True
            bar.update(task, completed=done, total=total)

        try:
            stack = ingest(imagery, footprints, out, params, progress=progress, force=force)
        except ModelError as exc:
            bar.stop()
            console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
            raise typer.Exit(code=1) from None
    for warning in caught:
        if issubclass(warning.category, IngestWarning):
            console.print(
                f"[yellow]warning:[/yellow] {escape(str(warning.message))}", soft_wrap=True, highlight=False
            )
    rejects = stack.manifest["rejects"]
    state = "built" if cut else "reused (inputs unchanged)"
    registration = load_or_estimate(stack.path, stack.chips, np.asarray(stack.valid), stack.fingerprint)
    shifts = np.abs(registration.offsets).max(axis=1)
    console.print(
        f"chip cache {state}: {stack.path}\n"
        f"  {len(stack)} buildings x {len(stack.dates)} dates "
        f"({stack.dates[0].isoformat()} .. {stack.dates[-1].isoformat()}), {stack.crs} at {stack.resolution} m, "
        f"chips {stack.chip_size}x{stack.chip_size}, mean validity {float(stack.valid.mean()):.2f}\n"
        f"  {len(rejects)} rejected input(s) listed in {stack.path / 'manifest.json'}; "
        f"fingerprint {stack.fingerprint[:12]}\n"
        f"  co-registration: dates shifted by up to {int(shifts.max(initial=0))} px "
        f"({int((shifts > 0).sum())} of {len(shifts)} dates moved; {stack.path / REGISTRATION_FILE})",
        soft_wrap=True,
        highlight=False,
    )
    typer.echo(
        json.dumps(
            {
                "cache": str(stack.path),
                "buildings": len(stack),
                "dates": len(stack.dates),
                "rejects": len(rejects),
                "built": cut,
                "fingerprint": stack.fingerprint,
                "registration_px": registration.offsets.tolist(),
            }
        )
    )
