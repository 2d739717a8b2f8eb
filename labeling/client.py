"""A Label Studio client for timeline projects, over label-studio-sdk: setup, push, pull, volunteers, webhooks.

Every call the SDK covers goes through its ``LabelStudio`` client, built on an injected ``httpx.Client`` (tests
pass one with a mock transport): projects, users, invites, single tasks, the export, annotations, webhooks and
the personal-access-token exchange. Raw requests remain only where the SDK lacks an option, each
named where it is made (:meth:`LabelStudioClient._raw`); they still go through the SDK's HTTP client, so they
share its base URL, headers and token handling:

- ``POST /api/projects/validate/``: ``projects.validate_label_config`` needs an existing project; validating a
  config before creating the project is not wrapped;
- ``POST /api/projects/{id}/import`` with a body encoded once: ``projects.import_tasks`` has no way to take an
  encoded body and walks every task twice in Python first (annotation-metadata conversion, then
  ``jsonable_encoder``), about 4 s per 2,000 tasks of 15 dates, longer than Label Studio's import itself;
- ``GET /api/tasks/`` (the task listing: the inventory before a push, the incremental pull): ``tasks.list`` has
  no way to hand back the page it received; it builds a union of typed task models for every task, about 1 s
  per 1,000 tasks on this machine, more than Label Studio's listing itself, and types a task's annotations as
  a string;
- ``GET /api/projects/{id}/next/`` (the label stream): not wrapped;
- :func:`signup_volunteer`: a browser form flow with CSRF cookies, not an API call.

Failures are retried with exponential backoff (the SDK's own retries are switched off: it retries every method,
writes included, on any 5xx):

- a request that never reached the server (connection refused, connect timeout) or was refused before any
  work (429) is sent again;
- a read, or an idempotent write (PATCH, DELETE, config validation), is sent again after a lost answer (read
  timeout, dropped connection) or a proxy error (502, 503, 504);
- a creating write (task import, annotation, project, webhook) after a lost answer or a proxy error may have
  been applied, so the client first looks (re-lists the project's tasks by building id, the task's annotations,
  the projects by title, the project's webhooks) and sends it again only for what is not there.

Authentication: a legacy token is sent as is; a personal access token (a JWT refresh token) is exchanged for a
short-lived access token (5 minutes in Label Studio). The SDK refreshes that access token when its ``exp`` claim
has passed on this machine's clock; when the server refuses it anyway (401: clocks apart, server-side
invalidation), the client drops it, exchanges the personal access token again and retries the call once.

Errors (:mod:`labeling.errors`) name the call, the status and the fix, never the token.

Sync state (:class:`SyncState`) is owned by the caller and round-trips through JSON: the building -> task map,
the annotation ids and versions seen per task, and the ``updated_at`` cursor.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from label_studio_sdk.core.request_options import RequestOptions

from labeling.config import CONFIGS, InstructionExample, config_kind, instructions_html, labeling_config
from labeling.convert import (
    PulledAnnotation,
    TaskSpec,
    convert_annotation,
    external_id,
    parse_timestamp,
    task_payload,
)
from labeling.errors import AuthenticationError, ConfigError, ConversionError, LabelStudioAPIError

__all__ = ["LabelStudioClient", "ProjectSettings", "PullResult", "PushResult", "SyncState"]

T = TypeVar("T")

_PAGE = 1000
# a request that never reached the server, so sending it again cannot apply anything twice
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_REFUSED_BEFORE_WORK = frozenset({429})
# a proxy gave up on the server (or the server on itself): the work may have been done
_MAYBE_APPLIED = frozenset({502, 503, 504})
_ANNOTATION_ACTIONS = ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED"]


@dataclass(frozen=True)
class ProjectSettings:
    """How a timeline project is set up.

    Attributes:
        title: project title.
        overlap: independent reviews per building (``maximum_annotations``).
        show_predictions: show model suggestions to volunteers (off keeps reviews independent).
        sampling: Label Studio sampling; uncertainty sampling serves the lowest prediction score first.
        chip_width_px: display width of each chip.
        examples: real chips of each kind for the instruction panel (:meth:`InstructionExample.chip`).
        config: ``compact`` (first damaged date, grade, hidden dates; about 3 clicks per building) or
            ``per_date`` (a state on every date).
    """

    title: str = "striketracker building timelines"
    overlap: int = 3
    show_predictions: bool = False
    sampling: str = "Uncertainty sampling"
    chip_width_px: int = 192
    examples: tuple[InstructionExample, ...] = ()
    config: str = "compact"


@dataclass(frozen=True)
class SyncState:
    """What this side knows of one project (persist it with :meth:`to_json`).

    Attributes:
        project_id: the Label Studio project.
        tasks: task id -> building id.
        seen: annotation id -> its ``updated_at`` when last pulled.
        task_annotations: task id -> annotation ids last seen on it.
        cursor: the largest task ``updated_at`` pulled (ISO), empty before the first pull.
    """

    project_id: int
    tasks: Mapping[int, str] = field(default_factory=dict)
    seen: Mapping[int, str] = field(default_factory=dict)
    task_annotations: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    cursor: str = ""

    def building_tasks(self) -> dict[str, int]:
        """Building id -> task id."""
        return {b: t for t, b in self.tasks.items()}

    def to_json(self) -> str:
        return json.dumps(
            {
                "project_id": self.project_id,
                "tasks": {str(k): v for k, v in self.tasks.items()},
                "seen": {str(k): v for k, v in self.seen.items()},
                "task_annotations": {str(k): list(v) for k, v in self.task_annotations.items()},
                "cursor": self.cursor,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> SyncState:
        raw = json.loads(text)
        return cls(
            project_id=int(raw["project_id"]),
            tasks={int(k): str(v) for k, v in raw.get("tasks", {}).items()},
            seen={int(k): str(v) for k, v in raw.get("seen", {}).items()},
            task_annotations={
                int(k): tuple(int(i) for i in v) for k, v in raw.get("task_annotations", {}).items()
            },
            cursor=str(raw.get("cursor", "")),
        )


@dataclass(frozen=True)
class PushResult:
    """Outcome of a push.

    Attributes:
        created: building id -> new task id.
        existing: building id -> task id of buildings already in the project (not pushed again).
        predictions: number of predictions created.
        state: the sync state including the new tasks.
    """

    created: Mapping[str, int]
    existing: Mapping[str, int]
    predictions: int
    state: SyncState


@dataclass(frozen=True)
class PullResult:
    """Outcome of a pull.

    Attributes:
        annotations: new or updated annotations since the last pull (each at most once).
        deleted: external ids (``ls:<id>``) of annotations deleted in Label Studio.
        deleted_buildings: buildings whose task was deleted in Label Studio.
        problems: one line per annotation part that could not be used, and why.
        state: the sync state to pass to the next pull.
        tasks_fetched: how many tasks were read in full.
    """

    annotations: tuple[PulledAnnotation, ...]
    deleted: tuple[str, ...]
    deleted_buildings: tuple[str, ...]
    problems: tuple[str, ...]
    state: SyncState
    tasks_fetched: int = 0


class LabelStudioClient:
    """Label Studio client for building-timeline projects.

    Args:
        base_url: server URL, e.g. ``http://127.0.0.1:8089``.
        token: legacy API token (40 hex) or personal access token (JWT refresh token).
        client: injected HTTP client (the SDK sends every request through it); a new one if None.
        retries: attempts per call for transient failures.
        backoff: first backoff in seconds, doubled per attempt.
        timeout: request timeout in seconds of the client made here (an injected client keeps its own).
        sleep: the sleep function (tests pass a recorder).

    Raises:
        AuthenticationError: no token, or a personal access token that has expired or cannot be read.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        client: httpx.Client | None = None,
        retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not token:
            raise AuthenticationError(
                "no Label Studio API token given; set STRIKETRACKER_LABEL_STUDIO_TOKEN or start the local "
                "server with `striketracker labelstudio start`, which generates one"
            )
        self.base_url = base_url.rstrip("/")
        self._http = client or httpx.Client(timeout=timeout)
        self._personal = token.count(".") == 2  # a personal access token is a JWT refresh token
        try:
            self._sdk = LabelStudio(base_url=self.base_url, api_key=token, httpx_client=self._http)
        except ApiError as exc:
            raise AuthenticationError(
                f"the personal access token cannot be used ({_reason(exc.body)}); create a new one in Label "
                "Studio (Account & Settings > Personal Access Token) and set STRIKETRACKER_LABEL_STUDIO_TOKEN",
                status=exc.status_code or 0,
            ) from None
        self._retries = max(1, retries)
        self._backoff = backoff
        self._sleep = sleep
        self._options: RequestOptions = {"max_retries": 0}
        self._user: int | None = None
        self._config_kinds: dict[int, str] = {}

    def __repr__(self) -> str:
        return f"LabelStudioClient({self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ transport
    def _call(
        self,
        method: str,
        path: str,
        fn: Callable[[RequestOptions], T],
        *,
        creates: bool = False,
        settle: Callable[[], T | None] | None = None,
    ) -> T:
        """One API call with the retry policy of the module docstring.

        Args:
            method: HTTP method, for messages and the retry policy.
            path: API path, for messages (no query string, no secrets).
            fn: makes the call with the given SDK request options.
            creates: the call creates something, so it may not be sent twice blindly.
            settle: for a creating call whose answer was lost: its result if it was applied, None if it was not
                (then it is sent again). Without it such a call fails with an error saying so.
        """
        delay = self._backoff
        refreshed = False
        attempts = 0
        while True:
            try:
                return fn(self._options)
            except _NOT_SENT as exc:
                last = f"cannot connect ({type(exc).__name__})"
            except (httpx.TransportError, json.JSONDecodeError) as exc:
                last = f"{type(exc).__name__} after the request was sent"
                if creates:
                    done = self._settle(method, path, settle, last)
                    if done is not None:
                        return done
            except ApiError as exc:
                status = exc.status_code or 0
                if status == 401 and self._personal and not refreshed:
                    refreshed = True
                    self._drop_access_token()
                    continue
                if status in (401, 403):
                    raise self._refused(method, path, status, refreshed) from None
                if status not in _REFUSED_BEFORE_WORK | _MAYBE_APPLIED:
                    raise LabelStudioAPIError(
                        f"{method} {path}: HTTP {status}: {_reason(exc.body)}",
                        status=status,
                        method=method,
                        path=path,
                    ) from None
                last = f"HTTP {status}"
                if creates and status in _MAYBE_APPLIED:
                    done = self._settle(method, path, settle, last)
                    if done is not None:
                        return done
            attempts += 1
            if attempts >= self._retries:
                raise LabelStudioAPIError(
                    f"{method} {path}: Label Studio at {self.base_url} unreachable after {attempts} attempts "
                    f"({last}); start it with `striketracker labelstudio start` or check the URL. Nothing was "
                    "changed on this side; rerun when it is up",
                    method=method,
                    path=path,
                )
            self._sleep(delay)
            delay *= 2

    def _settle(self, method: str, path: str, settle: Callable[[], T | None] | None, last: str) -> T | None:
        """Whether a creating call whose answer was lost was applied: its result, or None to send it again."""
        if settle is None:
            raise LabelStudioAPIError(
                f"{method} {path}: {last}; it may or may not have been applied. Rerun the operation: push "
                "skips buildings already in the project",
                method=method,
                path=path,
            )
        try:
            return settle()
        except LabelStudioAPIError as exc:
            raise LabelStudioAPIError(
                f"{method} {path}: {last}, and checking whether it was applied failed too ({exc}). Rerun the "
                "operation when Label Studio answers: push skips buildings already in the project",
                status=exc.status,
                method=method,
                path=path,
            ) from None

    def _refused(self, method: str, path: str, status: int, refreshed: bool) -> AuthenticationError:
        if refreshed:
            detail = (
                "even with a fresh access token exchanged for the personal access token; it may be revoked or "
                "issued by another server: create a new one and "
            )
        else:
            detail = ""
        return AuthenticationError(
            f"{method} {path}: Label Studio refused the API token (HTTP {status}); {detail}check "
            "STRIKETRACKER_LABEL_STUDIO_TOKEN or the token secret file under the work dir",
            status=status,
            method=method,
            path=path,
        )

    def _drop_access_token(self) -> None:
        """Forget the access token the server refused, so the next request exchanges the token again.

        label-studio-sdk 2.0 caches it in its token client and judges it only by its ``exp`` claim against
        this machine's clock; it has no public way to drop one the server no longer accepts.
        """
        self._sdk._client_wrapper._tokens_client._access_token = None

    def _raw(
        self,
        method: str,
        path: str,
        options: RequestOptions,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
    ) -> Any:
        """A request the SDK does not wrap, sent through the SDK's HTTP client (its URL, headers, token refresh).

        Returns the decoded JSON answer (None when empty); raises :class:`ApiError` for an error status, like
        the SDK's own calls.
        """
        response = self._sdk._client_wrapper.httpx_client.request(
            path.lstrip("/"),
            method=method,
            params=dict(params) if params else None,
            json=json_body,
            content=content,
            headers={"content-type": "application/json"} if content is not None else None,
            request_options=options,
        )
        if response.status_code >= 400:
            try:
                body = response.json()
            except json.JSONDecodeError:
                body = response.text[:200]
            raise ApiError(status_code=response.status_code, headers=dict(response.headers), body=body)
        return response.json() if response.content else None

    def _pages(
        self, method_path: str, fetch: Callable[[int, RequestOptions], tuple[list[Any], int | None]]
    ) -> Iterator[Any]:
        """Every item of a paged list; ``fetch(page, options)`` gives a page's items and the total if known.

        Stops at the last page without asking one past it when the total is known (Label Studio answers 404
        there, and logs a traceback).
        """
        page = 1
        while True:
            try:
                items, total = self._call("GET", method_path, functools.partial(fetch, page))
            except LabelStudioAPIError as exc:
                if exc.status == 404 and page > 1:
                    return
                raise
            yield from items
            if not items or len(items) < _PAGE or (total is not None and page * _PAGE >= total):
                return
            page += 1

    @staticmethod
    def _sdk_page(pager: Any) -> tuple[list[Any], int | None]:
        """Items and total of one page of an SDK list."""
        body = pager.response
        total = getattr(body, "total", None)
        if total is None:
            total = getattr(body, "count", None)
        return list(pager.items or []), None if total is None else int(total)

    # ------------------------------------------------------------------ identity and users
    def whoami(self) -> dict[str, Any]:
        """The token's user (checks the token)."""
        user = self._call(
            "GET", "/api/current-user/whoami", lambda o: self._sdk.users.whoami(request_options=o)
        )
        self._user = user.id
        return {"id": user.id, "email": user.email, "username": user.username}

    def _user_id(self) -> int | None:
        if self._user is None:
            self.whoami()
        return self._user

    def invite_token(self) -> str:
        """The organization's invite token (volunteers sign up with it; open signup is off)."""
        invite = self._call(
            "GET", "/api/invite", lambda o: self._sdk.organizations.invites.get_invite_link(request_options=o)
        )
        return str(invite.token)

    # ------------------------------------------------------------------ projects
    def validate_config(self, config: str) -> None:
        """Validate a labeling config against the server.

        Raises:
            ConfigError: the server rejected it (its reason in the message).
        """
        # raw: the SDK's projects.validate_label_config needs an existing project id
        try:
            self._call(
                "POST",
                "/api/projects/validate/",
                lambda o: self._raw("POST", "/api/projects/validate/", o, json_body={"label_config": config}),
            )
        except LabelStudioAPIError as exc:
            if exc.status == 400:
                raise ConfigError(f"Label Studio rejected the labeling config: {exc}") from None
            raise

    def _project_ids(self, title: str) -> set[int]:
        return {
            int(p.id)
            for p in self._pages(
                "GET /api/projects/",
                lambda page, o: self._sdk_page(
                    self._sdk.projects.list(title=title, page=page, page_size=_PAGE, request_options=o)
                ),
            )
            if p.title == title and p.id is not None
        }

    def create_project(self, settings: ProjectSettings = ProjectSettings()) -> int:
        """Create a timeline project (config validated first); returns its id."""
        if settings.overlap < 1:
            raise ConfigError(f"overlap={settings.overlap}; a building needs at least one review")
        if settings.config not in CONFIGS:
            raise ConfigError(f"config={settings.config!r}; use one of {list(CONFIGS)}")
        config = labeling_config(chip_width_px=settings.chip_width_px, kind=settings.config)
        self.validate_config(config)
        before = self._project_ids(settings.title)

        def settle() -> int | None:
            new = self._project_ids(settings.title) - before
            return max(new) if new else None

        project = self._call(
            "POST",
            "/api/projects/",
            lambda o: self._sdk.projects.create(
                title=settings.title,
                label_config=config,
                expert_instruction=instructions_html(settings.examples, kind=settings.config),
                show_instruction=True,
                maximum_annotations=settings.overlap,
                overlap_cohort_percentage=100,
                show_overlap_first=True,
                sampling=settings.sampling,  # type: ignore[arg-type]
                show_collab_predictions=settings.show_predictions,
                evaluate_predictions_automatically=False,
                show_skip_button=True,
                enable_empty_annotation=False,
                request_options=o,
            ).id,
            creates=True,
            settle=settle,
        )
        project_id = _new_id(project, "POST /api/projects/")
        self._config_kinds[project_id] = settings.config
        return project_id

    def find_project(self, title: str) -> int | None:
        """Id of the newest project with this title, or None."""
        return max(self._project_ids(title), default=None)

    def project(self, project_id: int) -> dict[str, Any]:
        """The project's settings as a dict (``label_config``, ``maximum_annotations``, ``sampling``...)."""
        project = self._call(
            "GET",
            f"/api/projects/{project_id}/",
            lambda o: self._sdk.projects.get(project_id, request_options=o),
        )
        return dict(project)

    def config_kind(self, project_id: int) -> str:
        """Which labeling config the project uses (:data:`labeling.config.CONFIGS`), read once per project."""
        if project_id not in self._config_kinds:
            self._config_kinds[project_id] = config_kind(
                str(self.project(project_id).get("label_config") or "")
            )
        return self._config_kinds[project_id]

    def set_model_version(self, project_id: int, model_version: str) -> None:
        """Point uncertainty sampling at the predictions of this model version."""
        self._call(
            "PATCH",
            f"/api/projects/{project_id}/",
            lambda o: self._sdk.projects.update(project_id, model_version=model_version, request_options=o),
        )

    def set_show_predictions(self, project_id: int, show: bool) -> None:
        """Show or hide model suggestions in the labeling interface."""
        self._call(
            "PATCH",
            f"/api/projects/{project_id}/",
            lambda o: self._sdk.projects.update(project_id, show_collab_predictions=show, request_options=o),
        )

    def delete_project(self, project_id: int) -> None:
        self._call(
            "DELETE",
            f"/api/projects/{project_id}/",
            lambda o: self._sdk.projects.delete(project_id, request_options=o),
        )

    # ------------------------------------------------------------------ webhooks
    def add_webhook(
        self, project_id: int, url: str, secret: str, *, header: str = "X-Striketracker-Secret"
    ) -> int:
        """Register a webhook for annotation events carrying the shared secret header; returns its id.

        If the answer is lost, a webhook of this project to the same URL is taken as this one.
        """

        def settle() -> int | None:
            hooks = self._call(
                "GET",
                "/api/webhooks/",
                lambda o: self._sdk.webhooks.list(project=str(project_id), request_options=o),
            )
            return next((int(h.id) for h in hooks if h.url == url and h.id is not None), None)

        return int(
            self._call(
                "POST",
                "/api/webhooks/",
                lambda o: self._sdk.webhooks.create(
                    url=url,
                    project=project_id,
                    send_payload=True,
                    send_for_all_actions=False,
                    actions=_ANNOTATION_ACTIONS,  # type: ignore[arg-type]
                    headers={header: secret},
                    is_active=True,
                    request_options=o,
                ).id,
                creates=True,
                settle=settle,
            )
        )

    def delete_webhook(self, webhook_id: int) -> None:
        self._call(
            "DELETE",
            f"/api/webhooks/{webhook_id}/",
            lambda o: self._sdk.webhooks.delete(webhook_id, request_options=o),
        )

    # ------------------------------------------------------------------ tasks
    def _tasks(
        self, project_id: int, *, include: str = "", query: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """The project's tasks as Label Studio sends them (paged): only the ``include`` fields when given,
        else everything, annotations included."""

        def fetch(page: int, options: RequestOptions) -> tuple[list[Any], int | None]:
            params: dict[str, Any] = {"project": project_id, "page": page, "page_size": _PAGE}
            params.update({"fields": "task_only", "include": include} if include else {"fields": "all"})
            if query:
                params["query"] = query
            # raw: tasks.list cannot hand back the page it received; it builds a union of typed task models for
            # every task (about 1 s per 1,000 tasks here, more than the listing itself) and types a task's
            # annotations as a string
            body = self._raw("GET", "/api/tasks/", options, params=params) or {}
            return list(body.get("tasks", [])), body.get("total")

        yield from self._pages("GET /api/tasks/", fetch)

    def task(self, task_id: int) -> dict[str, Any]:
        """One task with its data and predictions, as a dict."""
        task = self._call(
            "GET", f"/api/tasks/{task_id}/", lambda o: self._sdk.tasks.get(str(task_id), request_options=o)
        )
        out = dict(task)
        out["predictions"] = [dict(p) if not isinstance(p, dict) else p for p in (task.predictions or [])]
        return out

    def next_task(self, project_id: int) -> dict[str, Any]:
        """The task Label Studio serves this token's user next (the label stream), as a dict."""
        path = f"/api/projects/{project_id}/next/"
        # raw: the SDK has no call for the label stream
        return dict(self._call("GET", path, lambda o: self._raw("GET", path, o)) or {})

    def task_inventory(self, project_id: int) -> dict[int, tuple[str, str]]:
        """Every task of the project: task id -> (building id, updated_at)."""
        return {
            int(t["id"]): (str((t.get("data") or {}).get("building_id", "")), str(t.get("updated_at", "")))
            for t in self._tasks(project_id, include="id,data,updated_at")
        }

    def task_ids(self, project_id: int) -> set[int]:
        """Ids of every task in the project (cheap: no task data)."""
        return {int(t["id"]) for t in self._tasks(project_id, include="id")}

    def delete_task(self, task_id: int) -> None:
        self._call(
            "DELETE",
            f"/api/tasks/{task_id}/",
            lambda o: self._sdk.tasks.delete(str(task_id), request_options=o),
        )

    def import_tasks(self, project_id: int, chunk: Sequence[dict[str, Any]]) -> tuple[dict[str, int], int]:
        """Import prepared task items (:func:`labeling.convert.task_payload`, predictions or annotations
        embedded) in one call; returns building id -> new task id and the number of predictions.

        Prefer :meth:`push`, which skips buildings already in the project. A lost answer is settled by listing
        the project's tasks by building id: what arrived is not sent again.
        """
        path = f"/api/projects/{project_id}/import"
        created: dict[str, int] = {}
        n_predictions = 0
        remaining = list(chunk)
        while remaining:
            part = remaining
            buildings = [str(item["data"]["building_id"]) for item in part]

            def settle(part: list[dict[str, Any]] = part) -> tuple[dict[str, int], int] | None:
                wanted = {str(item["data"]["building_id"]) for item in part}
                inventory = self.task_inventory(project_id)
                present = {b: tid for tid, (b, _) in inventory.items() if b in wanted}
                arrived = [i for i in part if str(i["data"]["building_id"]) in present]
                return (present, sum(len(i.get("predictions", ())) for i in arrived)) if present else None

            def send(
                options: RequestOptions, part: list[dict[str, Any]] = part, buildings: list[str] = buildings
            ) -> tuple[dict[str, int], int]:
                # raw: projects.import_tasks cannot take an encoded body and re-encodes every task in Python
                answer = self._raw(
                    "POST",
                    path,
                    options,
                    params={"return_task_ids": "true"},
                    content=json.dumps(part).encode(),
                )
                ids = [int(i) for i in (answer or {}).get("task_ids", [])]
                if len(ids) != len(part):
                    raise LabelStudioAPIError(
                        f"import into project {project_id} returned {len(ids)} task ids for {len(part)} tasks; "
                        "rerun push (it skips buildings already present)",
                        method="POST",
                        path=path,
                    )
                return dict(zip(buildings, ids, strict=True)), int((answer or {}).get("prediction_count", 0))

            ids, n = self._call("POST", path, send, creates=True, settle=settle)
            created.update(ids)
            n_predictions += n
            remaining = [i for i in part if str(i["data"]["building_id"]) not in ids]
        return created, n_predictions

    def push(
        self,
        project_id: int,
        specs: Iterable[TaskSpec],
        *,
        public_base_url: str,
        model_version: str,
        state: SyncState | None = None,
        chunk_size: int = 2000,
        progress: Callable[[int], None] | None = None,
    ) -> PushResult:
        """Create tasks (with embedded predictions) for buildings not yet in the project.

        The project's tasks are listed first, so a building already there (from this or any earlier push)
        is not pushed again. Task data and predictions take the shape of the project's labeling config
        (:meth:`config_kind`). Tasks go in chunks of ``chunk_size`` per import call. The project's
        ``model_version`` is set to ``model_version`` so uncertainty sampling uses these predictions.

        Args:
            project_id: the project.
            specs: buildings to push; duplicates within the call are pushed once.
            public_base_url: where Label Studio's browser fetches chips.
            model_version: the predictions' model version.
            state: the previous sync state (its task map is refreshed from the server).
            chunk_size: tasks per import call.
            progress: called with the number of tasks created after each chunk.
        """
        if chunk_size < 1:
            raise ConfigError(f"chunk_size={chunk_size}; use a positive number of tasks per call")
        inventory = self.task_inventory(project_id)
        tasks = {tid: b for tid, (b, _) in inventory.items()}
        by_building = {b: tid for tid, b in tasks.items()}
        existing: dict[str, int] = {}
        todo: dict[str, TaskSpec] = {}
        for spec in specs:
            if spec.building_id in by_building:
                existing[spec.building_id] = by_building[spec.building_id]
            elif spec.building_id not in todo:
                todo[spec.building_id] = spec
        kind = self.config_kind(project_id) if todo else "compact"
        payloads = [
            task_payload(s, public_base_url=public_base_url, model_version=model_version, kind=kind)
            for s in todo.values()
        ]
        created: dict[str, int] = {}
        n_predictions = 0
        for start in range(0, len(payloads), chunk_size):
            ids, n = self.import_tasks(project_id, payloads[start : start + chunk_size])
            n_predictions += n
            created.update(ids)
            tasks.update({tid: b for b, tid in ids.items()})
            if progress is not None:
                progress(len(created))
        if n_predictions:
            self.set_model_version(project_id, model_version)
        base = state if state is not None and state.project_id == project_id else SyncState(project_id)
        return PushResult(created, existing, n_predictions, replace(base, tasks=tasks))

    # ------------------------------------------------------------------ pull
    def _tasks_full(self, project_id: int, since: str) -> Iterator[dict[str, Any]]:
        query = None
        if since:
            query = json.dumps(
                {
                    "filters": {
                        "conjunction": "and",
                        "items": [
                            {
                                "filter": "filter:tasks:updated_at",
                                "operator": "greater",
                                "type": "Datetime",
                                "value": _cursor(since),
                            }
                        ],
                    }
                }
            )
        yield from self._tasks(project_id, query=query)

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task with its annotations in one export call (Label Studio's full JSON export)."""
        raw = self._call(
            "GET",
            f"/api/projects/{project_id}/export",
            lambda o: b"".join(
                self._sdk.projects.exports.download_sync(
                    project_id, export_type="JSON", download_all_tasks=True, request_options=o
                )
            ),
        )
        return list(json.loads(raw) or []) if raw else []

    def pull(
        self,
        project_id: int,
        *,
        secret: bytes,
        state: SyncState | None = None,
        full: bool = False,
    ) -> PullResult:
        """New and updated annotations since ``state``, plus deletions, as per-date states.

        Incremental by time: only tasks whose ``updated_at`` is past the cursor are read in full (creating,
        updating or deleting an annotation bumps its task). Incremental by id: an annotation is returned only
        if its id is new or its ``updated_at`` changed, so re-pulling returns nothing twice. Annotations that
        vanished from a task read in full, and tasks that vanished from the project, are reported as deleted.
        Without a state (or with ``full``) everything is read through one export call.

        Args:
            project_id: the project.
            secret: key of the volunteer pseudonyms.
            state: the previous sync state, or None for a first pull.
            full: ignore the cursor and read every task (a reconciliation pass).
        """
        prev = state if state is not None and state.project_id == project_id else SyncState(project_id)
        if full or not prev.cursor:
            raw_tasks = self.export_tasks(project_id)
            present = {int(t["id"]) for t in raw_tasks}
        else:
            raw_tasks = list(self._tasks_full(project_id, prev.cursor))
            present = self.task_ids(project_id)
        tasks = dict(prev.tasks)
        seen = dict(prev.seen)
        task_annotations = dict(prev.task_annotations)
        cursor = prev.cursor
        pulled: list[PulledAnnotation] = []
        deleted: list[str] = []
        problems: list[str] = []
        for task in raw_tasks:
            tid = int(task["id"])
            data = task.get("data") or {}
            tasks[tid] = str(data.get("building_id", ""))
            cursor = max(cursor, _cursor(task.get("updated_at")))
            current: list[int] = []
            for ann in task.get("annotations") or []:
                aid = ann.get("id")
                if not isinstance(aid, int):
                    problems.append(f"task {tid}: an annotation has no integer id; skipped")
                    continue
                current.append(aid)
                version = str(ann.get("updated_at") or ann.get("created_at") or "")
                if seen.get(aid) == version:
                    continue
                converted = convert_annotation(ann, data, secret=secret, task_id=tid)
                problems.extend(converted.problems)
                seen[aid] = version
                if converted.annotation is not None:
                    pulled.append(converted.annotation)
            for aid in task_annotations.get(tid, ()):
                if aid not in current:
                    deleted.append(external_id(aid))
                    seen.pop(aid, None)
            task_annotations[tid] = tuple(current)
        deleted_buildings: list[str] = []
        for tid in [t for t in tasks if t not in present]:
            deleted_buildings.append(tasks.pop(tid))
            for aid in task_annotations.pop(tid, ()):
                deleted.append(external_id(aid))
                seen.pop(aid, None)
        new_state = SyncState(project_id, tasks, seen, task_annotations, cursor)
        return PullResult(
            tuple(pulled),
            tuple(deleted),
            tuple(deleted_buildings),
            tuple(problems),
            new_state,
            len(raw_tasks),
        )

    # ------------------------------------------------------------------ annotations (volunteer side)
    def submit(
        self, task_id: int, result: Sequence[Mapping[str, Any]], *, lead_time: float | None = None
    ) -> int:
        """Submit an annotation as the token's user; returns its id.

        If the answer is lost, the task's annotations are read back: one by this user with the same result is
        taken as this submission (an identical answer the same volunteer already gave counts as this one).
        """
        result = [dict(r) for r in result]

        def settle() -> int | None:
            me = self._user_id()
            mine = self._call(
                "GET",
                f"/api/tasks/{task_id}/annotations/",
                lambda o: self._sdk.annotations.list(task_id, request_options=o),
            )
            wanted = _result_key(result)
            return next(
                (
                    int(a.id)
                    for a in mine
                    if a.id is not None
                    and _user_of(a.completed_by) == me
                    and _result_key(a.result or []) == wanted
                ),
                None,
            )

        return int(
            self._call(
                "POST",
                f"/api/tasks/{task_id}/annotations/",
                lambda o: self._sdk.annotations.create(
                    task_id,
                    result=result,
                    **({"lead_time": lead_time} if lead_time is not None else {}),
                    request_options=o,
                ).id,
                creates=True,
                settle=settle,
            )
        )

    def update_annotation(self, annotation_id: int, result: Sequence[Mapping[str, Any]]) -> None:
        self._call(
            "PATCH",
            f"/api/annotations/{annotation_id}/",
            lambda o: self._sdk.annotations.update(
                annotation_id, result=[dict(r) for r in result], request_options=o
            ),
        )

    def delete_annotation(self, annotation_id: int) -> None:
        self._call(
            "DELETE",
            f"/api/annotations/{annotation_id}/",
            lambda o: self._sdk.annotations.delete(annotation_id, request_options=o),
        )


def _new_id(value: int | None, call: str) -> int:
    """The id of what a creating call made; Label Studio always returns one."""
    if value is None:
        raise LabelStudioAPIError(f"{call}: Label Studio answered without an id; rerun the operation")
    return int(value)


def _user_of(completed_by: object) -> int | None:
    if isinstance(completed_by, Mapping):
        completed_by = completed_by.get("id")
    return completed_by if isinstance(completed_by, int) else None


def _result_key(result: Sequence[Mapping[str, Any]]) -> list[str]:
    """What identifies an answer: each region's names, type and value (Label Studio may add other keys)."""
    return sorted(
        json.dumps([r.get("from_name"), r.get("to_name"), r.get("type"), r.get("value")], sort_keys=True)
        for r in result
    )


def _cursor(stamp: object) -> str:
    """A timestamp in the one format the Data Manager filter accepts (microseconds, UTC, ``Z``); sortable."""
    if not stamp:
        return ""
    if isinstance(stamp, dt.datetime):
        stamp = stamp.isoformat()
    try:
        return parse_timestamp(stamp).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except ConversionError:
        return ""


def _reason(body: object) -> str:
    """A short reason from an error answer's body (validation messages first; never our request)."""
    if isinstance(body, dict):
        detail = body.get("validation_errors") or body.get("detail") or body
        return json.dumps(detail, default=str)[:400]
    if isinstance(body, str):
        return body[:200] or "no details"
    return json.dumps(body, default=str)[:400]


def signup_volunteer(
    base_url: str, invite_token: str, email: str, password: str, *, timeout: float = 30.0
) -> str:
    """Sign a volunteer up through the invite link and return their API token (legacy token).

    Open signup is off on our server, so volunteers join with the organization's invite token. If the
    account already exists, it logs in instead.

    Raises:
        AuthenticationError: signup and login both failed (wrong password for an existing email).
    """
    base = base_url.rstrip("/")
    with httpx.Client(base_url=base, timeout=timeout) as s:
        s.get(f"/user/signup/?token={invite_token}")
        s.post(
            f"/user/signup/?token={invite_token}",
            data={
                "email": email,
                "password": password,
                "csrfmiddlewaretoken": s.cookies.get("csrftoken", ""),
            },
            headers={"Referer": f"{base}/user/signup/"},
            follow_redirects=False,
        )
        if s.get("/api/current-user/whoami").status_code != 200:
            s.get("/user/login/")
            s.post(
                "/user/login/",
                data={
                    "email": email,
                    "password": password,
                    "csrfmiddlewaretoken": s.cookies.get("csrftoken", ""),
                },
                headers={"Referer": f"{base}/user/login/"},
                follow_redirects=False,
            )
        r = s.get("/api/current-user/token")
        if r.status_code != 200:
            raise AuthenticationError(
                f"volunteer {email!r} could neither sign up with the invite token nor log in (HTTP {r.status_code}); "
                "check the invite token or the password",
                status=r.status_code,
            )
        return str(r.json()["token"])
