"""``POST /webhooks/labelstudio``: Label Studio annotation events, verified by the shared secret header.

A wrong or missing secret gets 401, a malformed body 400 (logged by its shape, never its content). A verified
event is handed to the app's webhook sink (by default the queue that stores it, :mod:`serving.events`) and
answered at once: Label Studio waits at most 1 s and never retries, so the store write happens after the reply,
and the periodic ``labelstudio sync`` reconciles anything lost. The ML backend's ``/webhook`` uses the same
:func:`receive_webhook`.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from labeling import SECRET_HEADER, WebhookAuthError, WebhookPayloadError, verify_secret
from serving.dependencies import ResourcesDep
from serving.events import read_webhook
from serving.routes.responses import ERRORS

__all__ = ["WebhookAck", "receive_webhook", "router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


class WebhookAck(BaseModel):
    """What was received; the store write follows after the reply."""

    action: str
    annotations: int
    deleted: int
    queued: bool


async def receive_webhook(request: Request, resources: ResourcesDep) -> WebhookAck:
    """Verify the secret, read the body, queue it for the store; answers in milliseconds."""
    metrics = resources.metrics
    try:
        verify_secret(request.headers.get(SECRET_HEADER), resources.webhook_secret)
    except WebhookAuthError as exc:
        logger.warning("webhook rejected: %s", exc)
        metrics.webhooks.labels("unknown", "rejected").inc()
        raise HTTPException(status_code=401, detail="invalid webhook secret") from None
    body = await request.body()
    try:
        received = read_webhook(body, secret=resources.pseudonym_secret)
    except WebhookPayloadError as exc:
        logger.warning("malformed webhook rejected: %s", exc)
        metrics.webhooks.labels("unknown", "rejected").inc()
        raise HTTPException(status_code=400, detail="malformed webhook body") from None
    event = received.event
    if event.problems:
        logger.warning("webhook %s: %d parts unusable", event.action, len(event.problems))
    queued = received.stores_anything
    if queued:
        resources.webhook_sink(received)
    else:
        metrics.webhooks.labels(event.action, "ignored").inc()
    return WebhookAck(
        action=event.action, annotations=len(event.annotations), deleted=len(event.deleted), queued=queued
    )


@router.post(
    "/labelstudio",
    response_model=WebhookAck,
    summary="Label Studio annotation events",
    responses={400: {"description": "malformed webhook body"}, 401: ERRORS[401], 413: ERRORS[413]},
)
async def labelstudio_webhook(request: Request, resources: ResourcesDep) -> WebhookAck:
    """Annotation created, updated or deleted in Label Studio: stored (idempotently) right after the reply."""
    return await receive_webhook(request, resources)
