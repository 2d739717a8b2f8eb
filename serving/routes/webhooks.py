"""``POST /webhooks/labelstudio``: Label Studio annotation events, verified by the shared secret header.

A wrong or missing secret gets 401, a malformed body 400 (logged by its shape, never its content). Accepted
events are handed to the app's webhook sink and answered at once: Label Studio waits at most 1 s and never
retries, so the periodic pull reconciles anything lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, HTTPException, Request

from labeling import (
    SECRET_HEADER,
    WebhookAuthError,
    WebhookEvent,
    WebhookPayloadError,
    parse_webhook,
    verify_secret,
)

__all__ = ["WebhookSink", "router"]

logger = logging.getLogger(__name__)

WebhookSink = Callable[[WebhookEvent], None]

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@router.post("/labelstudio")
async def labelstudio_webhook(request: Request) -> dict[str, int | str]:
    """Verify, parse and hand over one Label Studio webhook."""
    state = request.app.state
    try:
        verify_secret(request.headers.get(SECRET_HEADER), state.webhook_secret)
    except WebhookAuthError as exc:
        logger.warning("webhook rejected: %s", exc)
        raise HTTPException(status_code=401, detail="invalid webhook secret") from None
    body = await request.body()
    try:
        event = parse_webhook(body, secret=state.pseudonym_secret)
    except WebhookPayloadError as exc:
        logger.warning("malformed webhook rejected: %s", exc)
        raise HTTPException(status_code=400, detail="malformed webhook body") from None
    for problem in event.problems:
        logger.warning("webhook %s: %s", event.action, problem)
    sink: WebhookSink = state.webhook_sink
    sink(event)
    return {"action": event.action, "annotations": len(event.annotations), "deleted": len(event.deleted)}
