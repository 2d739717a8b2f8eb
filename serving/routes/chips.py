"""``GET /chips/{building_id}/{date_index}.png``: chip images for Label Studio tasks, from the chip cache."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from model.chips import ChipStack
from model.errors import CacheError
from serving.chip_render import render_chip

__all__ = ["ChipSource", "router"]


class ChipSource:
    """The chip cache, opened on first use and reopened when ingest rewrites it.

    Args:
        cache: the chip cache folder.
    """

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self._lock = threading.Lock()
        self._stack: ChipStack | None = None
        self._stamp = 0.0

    def stack(self) -> ChipStack:
        """The open stack.

        Raises:
            CacheError: there is no complete cache at ``cache``.
        """
        manifest = self.cache / "manifest.json"
        stamp = manifest.stat().st_mtime if manifest.exists() else -1.0
        with self._lock:
            if self._stack is None or stamp != self._stamp:
                self._stack = ChipStack.open(self.cache)
                self._stamp = stamp
            return self._stack


def _source(request: Request) -> ChipSource:
    source: ChipSource = request.app.state.chips
    return source


SourceDep = Annotated[ChipSource, Depends(_source)]

router = APIRouter(prefix="/chips", tags=["chips"])


@router.get(
    "/{building_id}/{date_index}.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, 404: {}, 503: {}},
)
def chip_png(building_id: str, date_index: int, source: SourceDep) -> Response:
    """One building's chip at one date, with its outline and date burned in."""
    try:
        stack = source.stack()
    except CacheError:
        raise HTTPException(status_code=503, detail="chip cache not available") from None
    try:
        i = stack.index(building_id)
    except KeyError:
        raise HTTPException(status_code=404, detail="unknown building") from None
    n_dates = len(stack.dates)
    if not 0 <= date_index < n_dates:
        raise HTTPException(status_code=404, detail="date index out of range")
    png = render_chip(
        stack.chips[i, date_index, :3],
        stack.mask[i],
        date=stack.dates[date_index],
        date_index=date_index,
        n_dates=n_dates,
        valid=float(stack.valid[i, date_index]),
    )
    return Response(
        content=png,
        media_type="image/png",
        headers={
            "Cache-Control": "public, max-age=3600",
            "ETag": f'"{stack.fingerprint[:16]}-{i}-{date_index}"',
            # Label Studio's editor fetches images by XHR from its own origin; chips are public, no credentials
            "Access-Control-Allow-Origin": "*",
        },
    )
