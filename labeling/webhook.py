"""Label Studio webhooks: verify the shared secret header, parse annotation events.

Label Studio (Community) does not sign webhooks; the project registers each webhook with a custom header
holding a shared secret (:meth:`labeling.client.LabelStudioClient.add_webhook`), and the receiver compares it in
constant time. Delivery is synchronous with a 1 s timeout and no retry, so receivers answer fast and the
periodic pull reconciles whatever was lost.
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from labeling.convert import PulledAnnotation, convert_annotation, external_id
from labeling.errors import WebhookAuthError, WebhookPayloadError

__all__ = ["ANNOTATION_ACTIONS", "SECRET_HEADER", "WebhookEvent", "parse_webhook", "verify_secret"]

SECRET_HEADER = "X-Striketracker-Secret"
ANNOTATION_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED")
_ACTION_NAME = re.compile(r"[A-Z][A-Z_]{0,63}")


@dataclass(frozen=True)
class WebhookEvent:
    """One parsed webhook.

    Attributes:
        action: Label Studio's action name.
        project_id: the project it concerns (0 if absent).
        annotations: the created or updated annotation, converted (empty for other actions).
        deleted: external ids of deleted annotations.
        problems: parts that could not be used, and why (never the body itself).
    """

    action: str
    project_id: int
    annotations: tuple[PulledAnnotation, ...] = ()
    deleted: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


def verify_secret(received: str | None, expected: str) -> None:
    """Check the shared-secret header in constant time.

    Raises:
        WebhookAuthError: no secret is configured, or the header is missing or wrong.
    """
    if not expected:
        raise WebhookAuthError("no webhook secret is configured on this side; refusing every webhook")
    if not received:
        raise WebhookAuthError(f"webhook without the {SECRET_HEADER} header")
    if not hmac.compare_digest(received.encode(), expected.encode()):
        raise WebhookAuthError(f"webhook with a wrong {SECRET_HEADER} header")


def parse_webhook(body: bytes, *, secret: bytes) -> WebhookEvent:
    """Parse a webhook body into a :class:`WebhookEvent`.

    Args:
        body: the raw request body.
        secret: key of the volunteer pseudonyms.

    Raises:
        WebhookPayloadError: not JSON, not an object, no action name, or an annotation event without its
            parts. The message describes the shape, never the content.
    """
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookPayloadError(f"webhook body is not JSON ({len(body)} bytes)") from None
    if not isinstance(payload, dict):
        raise WebhookPayloadError(f"webhook body is a JSON {type(payload).__name__}, expected an object")
    action = payload.get("action")
    if not isinstance(action, str) or not _ACTION_NAME.fullmatch(action):
        # only a name shaped like Label Studio's (ANNOTATION_CREATED) is repeated in messages and logs
        raise WebhookPayloadError("webhook body has no 'action' string naming a Label Studio action")
    project = payload.get("project")
    project_id = (
        int(project.get("id", 0)) if isinstance(project, dict) and isinstance(project.get("id"), int) else 0
    )
    if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
        annotation = payload.get("annotation")
        task = payload.get("task")
        if (
            not isinstance(annotation, dict)
            or not isinstance(task, dict)
            or not isinstance(task.get("data"), dict)
        ):
            raise WebhookPayloadError(
                f"{action} webhook lacks an 'annotation' object or a 'task' with 'data'"
            )
        task_id = task.get("id") if isinstance(task.get("id"), int) else 0
        converted = convert_annotation(annotation, task["data"], secret=secret, task_id=int(task_id or 0))
        anns = (converted.annotation,) if converted.annotation is not None else ()
        return WebhookEvent(action, project_id, annotations=anns, problems=converted.problems)
    if action == "ANNOTATIONS_DELETED":
        items: Any = payload.get("annotations")
        if not isinstance(items, list):
            raise WebhookPayloadError("ANNOTATIONS_DELETED webhook lacks an 'annotations' list")
        ids = [i.get("id") for i in items if isinstance(i, dict)]
        bad = sum(1 for i in ids if not isinstance(i, int))
        deleted = tuple(external_id(i) for i in ids if isinstance(i, int))
        problems = (f"ANNOTATIONS_DELETED: {bad} entries without an integer id; ignored",) if bad else ()
        return WebhookEvent(action, project_id, deleted=deleted, problems=problems)
    return WebhookEvent(
        action, project_id, problems=(f"action {action} is not an annotation event; ignored",)
    )
