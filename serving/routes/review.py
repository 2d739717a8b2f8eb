"""``GET /review``: the researchers' review page (static HTML, CSS and JS under ``serving/static``).

The page needs nothing from the internet: Leaflet is vendored under ``serving/static/vendor/leaflet`` and the
map has no tile layer (buildings are drawn on a plain background in their own coordinates). Its content
security policy allows only this origin, so a page that tried to reach a CDN would fail loudly in tests.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

__all__ = ["CONTENT_SECURITY_POLICY", "STATIC", "router"]

STATIC = Path(__file__).resolve().parents[1] / "static"
"""The page's files and the vendored libraries, served under ``/static``."""

router = APIRouter(tags=["review"])

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    return RedirectResponse("/review")


@router.get(
    "/review",
    response_class=FileResponse,
    summary="Researcher review page (HTML)",
    responses={200: {"content": {"text/html": {}}}},
)
def review_page() -> FileResponse:
    """Map of dated buildings, flagged list, chip timeline, posterior, volunteers' answers, verdict form."""
    return FileResponse(
        STATIC / "review" / "index.html",
        media_type="text/html",
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"},
    )
