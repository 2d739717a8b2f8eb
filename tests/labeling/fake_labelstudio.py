"""A small in-memory stand-in for the Label Studio API, served through httpx's MockTransport.

It keeps just enough state (tasks, annotations, access tokens) to check what the client does when the network or
the server misbehaves: a write committed but answered 504 by a proxy, an access token the server stopped
accepting. The success paths run against the real server in the integration tests.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from labeling.config import labeling_config


def fake_jwt(payload: dict[str, Any]) -> str:
    """An unsigned-looking JWT (header.payload.signature) that label-studio-sdk can decode without verifying."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(payload)}.c2lnbmF0dXJl"


def personal_access_token(user_id: int = 1) -> str:
    """A personal access token (a JWT refresh token, 200-year lifetime like Label Studio's)."""
    return fake_jwt(
        {"token_type": "refresh", "exp": int(time.time()) + 200 * 365 * 86400, "user_id": user_id}
    )


@dataclass
class FakeLabelStudio:
    """The API state and the fault injections.

    Attributes:
        tasks: task id -> task JSON (``id``, ``data``, ``annotations``, ``updated_at``).
        refreshes: how many times an access token was issued.
        refused: access tokens the server no longer accepts (expired on its clock).
        calls: ``"METHOD /path"`` of every request, in order.
        commit_then_fail: status codes to answer, one per write, after committing it (a proxy timing out
            while the server finished the work); ``"timeout"`` drops the answer (a read timeout).
        fail_before: status codes to answer, one per write (POST), without doing anything.
        expire_after: refuse each access token after this many authenticated requests (None: never).
        label_config: the project's labeling config.
        projects: project id -> project JSON (those created through the API).
        webhooks: webhook id -> webhook JSON.
    """

    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)
    refreshes: int = 0
    refused: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    commit_then_fail: list[int | str] = field(default_factory=list)
    fail_before: list[int] = field(default_factory=list)
    expire_after: int | None = None
    label_config: str = field(default_factory=labeling_config)
    projects: dict[int, dict[str, Any]] = field(default_factory=dict)
    webhooks: dict[int, dict[str, Any]] = field(default_factory=dict)
    _uses: dict[str, int] = field(default_factory=dict)
    _next_id: int = 1

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=self.transport())

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _authorized(self, request: httpx.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if header.startswith("Token "):
            return True
        token = header.removeprefix("Bearer ")
        if not header.startswith("Bearer ") or token in self.refused:
            return False
        self._uses[token] = self._uses.get(token, 0) + 1
        if self.expire_after is not None and self._uses[token] > self.expire_after:
            self.refused.add(token)
            return False
        return True

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append(f"{request.method} {path}")
        if path == "/api/token/refresh/":
            self.refreshes += 1
            access = fake_jwt({"token_type": "access", "exp": int(time.time()) + 3600, "jti": self.refreshes})
            return httpx.Response(200, json={"access": access})
        if request.method == "POST" and self.fail_before:
            return httpx.Response(self.fail_before.pop(0), text="<html>bad gateway</html>")
        if not self._authorized(request):
            return httpx.Response(401, json={"detail": "Authentication credentials were not provided."})
        response = self._route(request)
        if request.method == "POST" and self.commit_then_fail and response.status_code < 300:
            fault = self.commit_then_fail.pop(0)
            if fault == "timeout":
                raise httpx.ReadTimeout("the answer never came", request=request)
            return httpx.Response(int(fault), text="<html>gateway timeout</html>")
        return response

    def _route(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        routes: list[tuple[str, str, Callable[[httpx.Request, re.Match[str]], httpx.Response]]] = [
            (
                "GET",
                r"/api/current-user/whoami",
                lambda r, m: httpx.Response(200, json={"id": 1, "email": "a@b"}),
            ),
            ("POST", r"/api/projects/validate/", lambda r, m: httpx.Response(204)),
            ("GET", r"/api/projects/", self._list_projects),
            ("POST", r"/api/projects/", self._create_project),
            ("GET", r"/api/projects/(\d+)/", self._project),
            ("GET", r"/api/webhooks/", lambda r, m: httpx.Response(200, json=list(self.webhooks.values()))),
            ("POST", r"/api/webhooks/", self._create_webhook),
            ("PATCH", r"/api/projects/(\d+)/", lambda r, m: httpx.Response(200, json={"id": int(m[1])})),
            ("POST", r"/api/projects/(\d+)/import", self._import),
            ("GET", r"/api/tasks/", self._list_tasks),
            ("GET", r"/api/tasks/(\d+)/annotations/", self._list_annotations),
            ("POST", r"/api/tasks/(\d+)/annotations/", self._create_annotation),
        ]
        for verb, pattern, route in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                return route(request, match)
        return httpx.Response(404, json={"detail": f"no route {method} {path}"})

    def _list_projects(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        title = request.url.params.get("title", "")
        rows = [p for p in self.projects.values() if title.lower() in p["title"].lower()]
        return httpx.Response(200, json={"count": len(rows), "results": rows})

    def _create_project(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        body = json.loads(request.content)
        project = {"id": self._new_id(), "title": body["title"], "label_config": body["label_config"]}
        self.projects[project["id"]] = project
        return httpx.Response(201, json=project)

    def _create_webhook(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        body = json.loads(request.content)
        hook = {"id": self._new_id(), "url": body["url"], "project": body["project"]}
        self.webhooks[hook["id"]] = hook
        return httpx.Response(201, json=hook)

    def _project(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        return httpx.Response(
            200, json={"id": int(match[1]), "title": "p", "label_config": self.label_config}
        )

    def _import(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        items = json.loads(request.content)
        ids = []
        for item in items:
            tid = self._new_id()
            self.tasks[tid] = {
                "id": tid,
                "data": item["data"],
                "annotations": [],
                "predictions": item.get("predictions", []),
                "updated_at": "2026-11-21T06:42:10.676572Z",
            }
            ids.append(tid)
        n_pred = sum(len(i.get("predictions", [])) for i in items)
        return httpx.Response(201, json={"task_count": len(ids), "task_ids": ids, "prediction_count": n_pred})

    def _list_tasks(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        page = int(request.url.params.get("page", 1))
        size = int(request.url.params.get("page_size", 100))
        rows = list(self.tasks.values())
        chunk = rows[(page - 1) * size : page * size]
        if page > 1 and not chunk:
            return httpx.Response(404, json={"detail": "Invalid page."})
        return httpx.Response(200, json={"total": len(rows), "tasks": chunk})

    def _list_annotations(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        return httpx.Response(200, json=self.tasks[int(match[1])]["annotations"])

    def _create_annotation(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        body = json.loads(request.content)
        ann = {
            "id": self._new_id(),
            "task": int(match[1]),
            "completed_by": 1,
            "result": body["result"],
            "created_at": "2026-11-21T06:42:10.676572Z",
            "updated_at": "2026-11-21T06:42:10.676572Z",
        }
        self.tasks[int(match[1])]["annotations"].append(ann)
        return httpx.Response(201, json=ann)
