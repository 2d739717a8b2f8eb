"""A Label Studio API client for timeline projects: setup, push, pull, volunteers and webhooks.

It wraps an injected ``httpx.Client`` (tests may pass one with a mock transport) and talks to the REST API
that label-studio-sdk 2.x wraps, because push and pull need bulk and filter options the typed SDK does not
expose (``return_task_ids`` with embedded predictions, Data Manager filters, ``include``). Transient failures
(connection refused, 429, 502-504) are retried with exponential backoff; a write that may have reached the
server is not blindly retried but reported, and push is idempotent so rerunning it is safe. Errors name the
call, the status and the fix, never the token.

Sync state (:class:`SyncState`) is owned by the caller and round-trips through JSON: the building -> task map,
the annotation ids and versions seen per task, and the ``updated_at`` cursor.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from labeling.config import InstructionExample, instructions_html, labeling_config
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

_RETRY_STATUS = frozenset({429, 502, 503, 504})
_PAGE = 1000


@dataclass(frozen=True)
class ProjectSettings:
    """How a timeline project is set up.

    Attributes:
        title: project title.
        overlap: independent reviews per building (``maximum_annotations``).
        show_predictions: show model suggestions to volunteers (off keeps reviews independent).
        sampling: Label Studio sampling; uncertainty sampling serves the lowest prediction score first.
        chip_width_px: display width of each chip.
        examples: worked examples for the instruction panel.
    """

    title: str = "striketracker building timelines"
    overlap: int = 3
    show_predictions: bool = False
    sampling: str = "Uncertainty sampling"
    chip_width_px: int = 192
    examples: tuple[InstructionExample, ...] = ()


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
    """Label Studio REST client for building-timeline projects.

    Args:
        base_url: server URL, e.g. ``http://127.0.0.1:8089``.
        token: legacy API token (40 hex) or personal access token (JWT refresh token).
        client: injected HTTP client (its base URL and auth are set here); a new one if None.
        retries: attempts for transient failures.
        backoff: first backoff in seconds, doubled per attempt.
        sleep: the sleep function (tests pass a recorder).
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
        self._token = token
        self._http = client or httpx.Client(timeout=timeout)
        self._retries = max(1, retries)
        self._backoff = backoff
        self._sleep = sleep
        self._auth_header = ""

    def __repr__(self) -> str:
        return f"LabelStudioClient({self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ transport
    def _authorization(self) -> str:
        if self._auth_header:
            return self._auth_header
        if self._token.count(".") == 2:  # a personal access token is a JWT refresh token
            r = self._send("POST", "/api/token/refresh/", json={"refresh": self._token}, auth=False)
            self._auth_header = f"Bearer {r.json()['access']}"
        else:
            self._auth_header = f"Token {self._token}"
        return self._auth_header

    def _send(
        self, method: str, path: str, *, auth: bool = True, idempotent: bool | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One API call with retries; raises a clear error for any non-2xx answer."""
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "PUT", "DELETE")
        headers = dict(kwargs.pop("headers", {}) or {})
        if auth:
            headers["Authorization"] = self._authorization()
        url = f"{self.base_url}{path}"
        delay = self._backoff
        last = ""
        for attempt in range(1, self._retries + 1):
            try:
                response = self._http.request(method, url, headers=headers, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last = f"cannot connect ({type(exc).__name__})"
            except httpx.TransportError as exc:
                if not idempotent:
                    raise LabelStudioAPIError(
                        f"{method} {path}: {type(exc).__name__} after the request was sent; it may or may not "
                        "have been applied. Rerun the operation: push skips buildings already in the project",
                        method=method,
                        path=path,
                    ) from None
                last = type(exc).__name__
            else:
                if response.status_code < 400:
                    return response
                if response.status_code in (401, 403):
                    raise AuthenticationError(
                        f"{method} {path}: Label Studio refused the API token (HTTP {response.status_code}); "
                        "check STRIKETRACKER_LABEL_STUDIO_TOKEN or the token secret file under the work dir",
                        status=response.status_code,
                        method=method,
                        path=path,
                    )
                if response.status_code not in _RETRY_STATUS:
                    raise LabelStudioAPIError(
                        f"{method} {path}: HTTP {response.status_code}: {_reason(response)}",
                        status=response.status_code,
                        method=method,
                        path=path,
                    )
                last = f"HTTP {response.status_code}"
            if attempt < self._retries:
                self._sleep(delay)
                delay *= 2
        raise LabelStudioAPIError(
            f"{method} {path}: Label Studio at {self.base_url} unreachable after {self._retries} attempts "
            f"({last}); start it with `striketracker labelstudio start` or check the URL. Nothing was changed "
            "on this side; rerun when it is up",
            method=method,
            path=path,
        )

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        return response.json() if response.content else None

    # ------------------------------------------------------------------ identity and users
    def whoami(self) -> dict[str, Any]:
        """The token's user (checks the token)."""
        return dict(self._json("GET", "/api/current-user/whoami"))

    def invite_token(self) -> str:
        """The organization's invite token (volunteers sign up with it; open signup is off)."""
        return str(self._json("GET", "/api/invite")["token"])

    # ------------------------------------------------------------------ projects
    def validate_config(self, config: str) -> None:
        """Validate a labeling config against the server.

        Raises:
            ConfigError: the server rejected it (its reason in the message).
        """
        try:
            self._send("POST", "/api/projects/validate/", json={"label_config": config}, idempotent=True)
        except LabelStudioAPIError as exc:
            if exc.status == 400:
                raise ConfigError(f"Label Studio rejected the labeling config: {exc}") from None
            raise

    def create_project(self, settings: ProjectSettings = ProjectSettings()) -> int:
        """Create a timeline project (config validated first); returns its id."""
        if settings.overlap < 1:
            raise ConfigError(f"overlap={settings.overlap}; a building needs at least one review")
        config = labeling_config(chip_width_px=settings.chip_width_px)
        self.validate_config(config)
        project = self._json(
            "POST",
            "/api/projects/",
            json={
                "title": settings.title,
                "label_config": config,
                "expert_instruction": instructions_html(settings.examples),
                "show_instruction": True,
                "maximum_annotations": settings.overlap,
                "overlap_cohort_percentage": 100,
                "show_overlap_first": True,
                "sampling": settings.sampling,
                "show_collab_predictions": settings.show_predictions,
                "evaluate_predictions_automatically": False,
                "show_skip_button": True,
                "enable_empty_annotation": False,
            },
        )
        return int(project["id"])

    def find_project(self, title: str) -> int | None:
        """Id of the newest project with this title, or None."""
        found = [
            p
            for p in self._paged("/api/projects/", params={"title": title}, key="results")
            if p.get("title") == title
        ]
        return max((int(p["id"]) for p in found), default=None)

    def project(self, project_id: int) -> dict[str, Any]:
        return dict(self._json("GET", f"/api/projects/{project_id}/"))

    def set_model_version(self, project_id: int, model_version: str) -> None:
        """Point uncertainty sampling at the predictions of this model version."""
        self._send(
            "PATCH", f"/api/projects/{project_id}/", json={"model_version": model_version}, idempotent=True
        )

    def set_show_predictions(self, project_id: int, show: bool) -> None:
        """Show or hide model suggestions in the labeling interface."""
        self._send(
            "PATCH", f"/api/projects/{project_id}/", json={"show_collab_predictions": show}, idempotent=True
        )

    def delete_project(self, project_id: int) -> None:
        self._send("DELETE", f"/api/projects/{project_id}/")

    # ------------------------------------------------------------------ webhooks
    def add_webhook(
        self, project_id: int, url: str, secret: str, *, header: str = "X-Striketracker-Secret"
    ) -> int:
        """Register a webhook for annotation events carrying the shared secret header; returns its id."""
        hook = self._json(
            "POST",
            "/api/webhooks/",
            json={
                "project": project_id,
                "url": url,
                "send_payload": True,
                "send_for_all_actions": False,
                "actions": ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED"],
                "headers": {header: secret},
                "is_active": True,
            },
        )
        return int(hook["id"])

    # ------------------------------------------------------------------ tasks
    def _paged(self, path: str, *, params: Mapping[str, Any], key: str) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            try:
                body = self._json("GET", path, params={**params, "page": page, "page_size": _PAGE})
            except LabelStudioAPIError as exc:
                if exc.status == 404 and page > 1:  # Label Studio answers 404 one page past the end
                    return
                raise
            items = body.get(key, []) if isinstance(body, dict) else body
            yield from items
            total = body.get("total", body.get("count")) if isinstance(body, dict) else None
            if not items or len(items) < _PAGE or (total is not None and page * _PAGE >= int(total)):
                return
            page += 1

    def task_inventory(self, project_id: int) -> dict[int, tuple[str, str]]:
        """Every task of the project: task id -> (building id, updated_at)."""
        out: dict[int, tuple[str, str]] = {}
        params = {"project": project_id, "fields": "task_only", "include": "id,data,updated_at"}
        for task in self._paged("/api/tasks/", params=params, key="tasks"):
            data = task.get("data") or {}
            out[int(task["id"])] = (str(data.get("building_id", "")), str(task.get("updated_at", "")))
        return out

    def task_ids(self, project_id: int) -> set[int]:
        """Ids of every task in the project (cheap: no task data)."""
        params = {"project": project_id, "fields": "task_only", "include": "id"}
        return {int(t["id"]) for t in self._paged("/api/tasks/", params=params, key="tasks")}

    def delete_task(self, task_id: int) -> None:
        self._send("DELETE", f"/api/tasks/{task_id}/")

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
        is not pushed again. Tasks go in chunks of ``chunk_size`` per import call. The project's
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
        payloads = [
            task_payload(s, public_base_url=public_base_url, model_version=model_version)
            for s in todo.values()
        ]
        created: dict[str, int] = {}
        n_predictions = 0
        for start in range(0, len(payloads), chunk_size):
            chunk = payloads[start : start + chunk_size]
            body = self._json(
                "POST", f"/api/projects/{project_id}/import", params={"return_task_ids": "true"}, json=chunk
            )
            ids = [int(i) for i in body.get("task_ids", [])]
            if len(ids) != len(chunk):
                raise LabelStudioAPIError(
                    f"import into project {project_id} returned {len(ids)} task ids for {len(chunk)} tasks; "
                    "rerun push (it skips buildings already present)",
                    method="POST",
                    path=f"/api/projects/{project_id}/import",
                )
            n_predictions += int(body.get("prediction_count", 0))
            for item, tid in zip(chunk, ids, strict=True):
                created[item["data"]["building_id"]] = tid
                tasks[tid] = item["data"]["building_id"]
            if progress is not None:
                progress(len(created))
        if n_predictions:
            self.set_model_version(project_id, model_version)
        base = state if state is not None and state.project_id == project_id else SyncState(project_id)
        return PushResult(created, existing, n_predictions, replace(base, tasks=tasks))

    # ------------------------------------------------------------------ pull
    def _tasks_full(self, project_id: int, since: str) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"project": project_id, "fields": "all"}
        if since:
            params["query"] = json.dumps(
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
        yield from self._paged("/api/tasks/", params=params, key="tasks")

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task with its annotations in one export call (Label Studio's full JSON export)."""
        body = self._json(
            "GET",
            f"/api/projects/{project_id}/export",
            params={"exportType": "JSON", "download_all_tasks": "true"},
        )
        return list(body or [])

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
        """Submit an annotation as the token's user; returns its id."""
        body: dict[str, Any] = {"result": list(result)}
        if lead_time is not None:
            body["lead_time"] = lead_time
        return int(self._json("POST", f"/api/tasks/{task_id}/annotations/", json=body)["id"])

    def update_annotation(self, annotation_id: int, result: Sequence[Mapping[str, Any]]) -> None:
        self._send(
            "PATCH", f"/api/annotations/{annotation_id}/", json={"result": list(result)}, idempotent=True
        )

    def delete_annotation(self, annotation_id: int) -> None:
        self._send("DELETE", f"/api/annotations/{annotation_id}/")


def _cursor(stamp: object) -> str:
    """A timestamp in the one format the Data Manager filter accepts (microseconds, UTC, ``Z``); sortable."""
    if not stamp:
        return ""
    try:
        return parse_timestamp(stamp).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except ConversionError:
        return ""


def _reason(response: httpx.Response) -> str:
    """A short reason from an error answer (validation messages only; never echoes our request)."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "no details"
    if isinstance(body, dict):
        detail = body.get("validation_errors") or body.get("detail") or body
        return json.dumps(detail)[:400]
    return json.dumps(body)[:400]


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
