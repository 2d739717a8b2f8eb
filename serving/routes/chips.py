"""``GET /chips/{building_id}/{date_index}.png``: chip images for Label Studio tasks and the review page.

Label Studio's editor fetches images by XHR from its own origin, so chips carry
``Access-Control-Allow-Origin`` for the origins in ``Settings.cors_origins`` (by default Label Studio's) and
for no one else; no other route answers cross-origin requests. PNGs come from the render cache
(:class:`serving.chips.ChipSource`) and carry an ETag: a browser that already holds the chip gets 304.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Response

from serving.dependencies import ChipStackDep, ResourcesDep
from serving.routes.responses import ERRORS

__all__ = ["router"]

router = APIRouter(prefix="/chips", tags=["chips"])


@router.get(
    "/{building_id}/{date_index}.png",
    response_class=Response,
    summary="One chip image",
    responses={200: {"content": {"image/png": {}}}, 304: {"description": "not modified"}, 404: ERRORS[404],
               503: ERRORS[503]},
)  # fmt: skip
def chip_png(
    building_id: str,
    date_index: int,
    resources: ResourcesDep,
    stack: ChipStackDep,
    origin: Annotated[str | None, Header(include_in_schema=False)] = None,
    if_none_match: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """One building's chip at one date, with its outline and date burned in."""
    try:
        row = stack.index(building_id)
    except KeyError:
        raise HTTPException(status_code=404, detail="unknown building") from None
    if not 0 <= date_index < len(stack.dates):
        raise HTTPException(status_code=404, detail="date index out of range")
    chip = resources.chips.png(stack, row, date_index)
    headers = {"Cache-Control": "public, max-age=3600", "ETag": chip.etag, "Vary": "Origin"}
    allowed = resources.settings.cors_origins
    if origin and ("*" in allowed or origin.rstrip("/") in allowed):
        headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
    if if_none_match is not None and chip.etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(content=chip.png, media_type="image/png", headers=headers)
