"""``GET /metrics``: Prometheus text exposition of this instance (requests, webhooks, verdicts, buildings)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from serving.dependencies import ResourcesDep
from serving.metrics import CONTENT_TYPE

__all__ = ["router"]

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={200: {"content": {"text/plain": {}}}},
)
async def prometheus(resources: ResourcesDep) -> Response:
    """Request counts and latencies by route, webhook events, verdicts, buildings by status, chip cache."""
    body = await run_in_threadpool(resources.metrics.exposition)
    return Response(body, media_type=CONTENT_TYPE)
