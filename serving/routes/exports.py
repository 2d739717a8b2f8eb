"""``GET /api/export.{geojson,gpkg,csv}``: the dated buildings with their evidence, as a file for GIS."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from active_learning.posterior import Status
from model.errors import CacheError
from serving.dependencies import ResourcesDep, SnapshotDep
from serving.export import LAYER, MEDIA_TYPES, export_frame, write_export
from serving.routes.buildings import FlagName
from serving.routes.responses import ERRORS

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["exports"])


def image_checksums(resources: ResourcesDep) -> list[str | None]:
    """sha256 of each date's source image, from the chip cache manifest (empty without a cache)."""
    try:
        sources = resources.chips.stack().manifest.get("sources") or []
    except CacheError:  # no chip cache: exports still carry every other piece of evidence
        return []
    return [s.get("sha256") if isinstance(s, dict) else None for s in sources]


@router.get(
    "/export.{fmt}",
    response_class=Response,
    summary="Dated buildings as GeoJSON, GeoPackage or CSV",
    responses={
        200: {"content": {t: {} for t in MEDIA_TYPES.values()}},
        422: ERRORS[422],
    },
)
async def export(
    fmt: Literal["geojson", "gpkg", "csv"],
    resources: ResourcesDep,
    snapshot: SnapshotDep,
    status: Annotated[list[Status], Query(description="keep these statuses")] = [],  # noqa: B006
    flag: Annotated[list[FlagName], Query(description="keep buildings with any of these flags")] = [],  # noqa: B006
) -> Response:
    """Every dated building (or those matching the filters) with dates, evidence links and image checksums."""
    chosen = snapshot.select(statuses=[str(s) for s in status], flags=flag)
    frame = export_frame(
        snapshot, resources.store, resources.settings.public_base_url, chosen, image_checksums(resources)
    )
    with tempfile.TemporaryDirectory(prefix="striketracker-export-") as tmp:
        path = await run_in_threadpool(write_export, frame, Path(tmp) / f"{LAYER}.{fmt}", fmt)
        content = path.read_bytes()
    return Response(
        content,
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{LAYER}.{fmt}"'},
    )
