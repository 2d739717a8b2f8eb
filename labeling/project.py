"""Project wiring beyond tasks: overlap of an existing project, webhooks and the ML backend connection.

These use label-studio-sdk's typed client (``LabelStudio``), which accepts a legacy token or a personal access
token alike. Every function is idempotent, so ``striketracker labelstudio setup`` can be rerun safely: a webhook
or ML backend already pointing at the same URL is reused, not duplicated.

Label Studio creates a webhook ``<backend url>/webhook`` (all actions, no headers) when an ML backend is added,
unless the project already has a webhook with that URL. :func:`connect_ml_backend` therefore registers that URL
first, with the shared-secret header and only the annotation actions, so the backend's webhook can be verified
like any other. Label Studio checks the backend (``/health``, ``/setup``) when it is added: the service must
be running and reachable from the Label Studio *server* at that URL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from labeling.errors import LabelStudioAPIError
from labeling.webhook import ANNOTATION_ACTIONS, SECRET_HEADER

__all__ = ["MlBackendConnection", "connect_ml_backend", "ensure_webhook", "set_overlap"]


@dataclass(frozen=True)
class MlBackendConnection:
    """An ML backend attached to a project.

    Attributes:
        backend_id: Label Studio's id of the backend.
        url: the backend's base URL as Label Studio calls it.
        model_version: the version the backend reported in ``/setup``.
        state: Label Studio's connection state (``CO`` connected, ``ER`` error, ...).
        created: False when an existing backend with the same URL was reused.
    """

    backend_id: int
    url: str
    model_version: str
    state: str
    created: bool


def _sdk(base_url: str, token: str) -> LabelStudio:
    return LabelStudio(base_url=base_url.rstrip("/"), api_key=token)


def _call(what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ApiError as exc:
        body = exc.body if isinstance(exc.body, dict | str) else ""
        detail = body.get("detail") or body.get("validation_errors") or "" if isinstance(body, dict) else body
        raise LabelStudioAPIError(
            f"{what}: HTTP {exc.status_code}: {str(detail)[:300]}", status=exc.status_code or 0
        ) from None


def set_overlap(base_url: str, token: str, project_id: int, overlap: int) -> None:
    """Independent reviews per building (``maximum_annotations``) of an existing project."""
    ls = _sdk(base_url, token)
    _call(
        f"PATCH /api/projects/{project_id}/",
        lambda: ls.projects.update(
            id=project_id, maximum_annotations=overlap, overlap_cohort_percentage=100, show_overlap_first=True
        ),
    )


def ensure_webhook(base_url: str, token: str, project_id: int, url: str, secret: str) -> tuple[int, bool]:
    """A webhook of the project to ``url`` for annotation events with the secret header.

    Returns:
        ``(webhook id, created)``; an existing webhook to the same URL gets the header and actions updated.
    """
    ls = _sdk(base_url, token)
    hooks = _call("GET /api/webhooks/", lambda: ls.webhooks.list(project=str(project_id)))
    found = next(
        (int(h.id) for h in hooks if (h.url or "").rstrip("/") == url.rstrip("/") and h.id is not None), None
    )
    if found is not None:
        _call(
            f"PATCH /api/webhooks/{found}/",
            lambda: ls.webhooks.update(
                id=found, url=url, send_payload=True, send_for_all_actions=False,
                actions=list(ANNOTATION_ACTIONS), headers={SECRET_HEADER: secret}, is_active=True,
            ),
        )  # fmt: skip
        return found, False
    created = _call(
        "POST /api/webhooks/",
        lambda: ls.webhooks.create(
            url=url, project=project_id, send_payload=True, send_for_all_actions=False,
            actions=list(ANNOTATION_ACTIONS), headers={SECRET_HEADER: secret}, is_active=True,
        ),
    )  # fmt: skip
    return int(created.id), True


def connect_ml_backend(
    base_url: str,
    token: str,
    project_id: int,
    backend_url: str,
    secret: str,
    *,
    title: str = "striketracker champion",
    timeout_s: int = 100,
) -> MlBackendConnection:
    """Attach the service as the project's ML backend (reusing one with the same URL).

    The backend's own webhook (``<backend_url>/webhook``) is registered first with the secret header.

    Raises:
        LabelStudioAPIError: Label Studio refused (e.g. it could not reach ``backend_url``: start the service
            first, and make sure the Label Studio server can reach that address).
    """
    url = backend_url.rstrip("/")
    ensure_webhook(base_url, token, project_id, f"{url}/webhook", secret)
    ls = _sdk(base_url, token)
    existing = _call("GET /api/ml/", lambda: ls.ml.list(project=project_id))
    for backend in existing:
        if (backend.url or "").rstrip("/") == url and backend.id is not None:
            return MlBackendConnection(
                int(backend.id), url, str(backend.model_version or ""), str(backend.state or ""), False
            )
    backend = _call(
        "POST /api/ml/",
        lambda: ls.ml.create(
            url=url, project=project_id, title=title, is_interactive=False, timeout=timeout_s
        ),
    )
    return MlBackendConnection(
        int(backend.id), url, str(backend.model_version or ""), str(backend.state or ""), True
    )
