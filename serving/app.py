"""The striketracker service: ``create_app(settings)`` builds the FastAPI app.

Routers, one per resource, live in ``serving/routes``: the REST API under ``/api`` (buildings, verdicts, queue,
campaign, timeline, exports), chip images, Label Studio webhooks and the ML-backend protocol, the researcher
review page and ``/metrics``. The app's state (:class:`serving.resources.Resources`) is built here from the one
Settings object, so tests build an app from Settings and nothing happens at import time.

At the edge, one ASGI middleware (:class:`EdgeMiddleware`) refuses bodies over ``Settings.max_request_bytes``
with 413 before reading them into memory (from ``Content-Length``, and by counting for chunked bodies), times
and counts every request by route template, and turns any unexpected exception into a bare 500: no
traceback reaches a client, and the log line names the exception's type and where it was raised, never its
message (which may quote the request). Request bodies and tokens are never logged by this package.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from active_learning.settings import Settings
from serving.errors import ServingError, VerdictError
from serving.events import ReceivedWebhook
from serving.mlbackend import Predictor
from serving.resources import build_resources
from serving.routes import buildings, campaign, chips, exports, metrics, mlbackend, review, webhooks
from serving.routes.review import STATIC

__all__ = ["EdgeMiddleware", "create_app"]

logger = logging.getLogger(__name__)

_TOO_LARGE = b'{"detail":"request body too large"}'
_INTERNAL = b'{"detail":"internal error"}'


class _BodyTooLarge(HTTPException):
    """Raised while reading a body past the limit; an HTTPException so FastAPI's body parsing passes it on."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="request body too large")


class EdgeMiddleware:
    """Body-size limit, request metrics and the last line of defence against leaking errors.

    Args:
        app: the wrapped ASGI app.
        limit: largest body in bytes for every path but those in ``limits``.
        limits: path -> its own limit (``/predict`` takes every selected task at once).
        observe: ``observe(method, route, status, seconds)`` for each HTTP request.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        limits: dict[str, int],
        observe: Callable[[str, str, int, float], None],
    ) -> None:
        self.app = app
        self.limit = limit
        self.limits = limits
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        limit = self.limits.get(scope["path"], self.limit)
        status = {"code": 500, "sent": False}

        async def send_tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = int(message["status"]), True
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        declared = dict(scope.get("headers") or []).get(b"content-length")
        try:
            if declared is not None and (not declared.isdigit() or int(declared) > limit):
                await self._answer(send_tracked, 413, _TOO_LARGE)
                return
            seen = 0

            async def receive_limited() -> Message:
                nonlocal seen
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > limit:
                        raise _BodyTooLarge
                return message

            await self.app(scope, receive_limited, send_tracked)
        except _BodyTooLarge:
            if not status["sent"]:
                await self._answer(send_tracked, 413, _TOO_LARGE)
        except Exception as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f"{Path(frame.filename).name}:{frame.lineno}" if frame else "?"
            logger.error(
                "unhandled %s at %s on %s %s", type(exc).__name__, where, scope["method"], scope["path"]
            )
            if not status["sent"]:
                await self._answer(send_tracked, 500, _INTERNAL)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or (
                "static" if scope["path"].startswith("/static/") else "unmatched"
            )
            self.observe(scope["method"], template, status["code"], time.perf_counter() - started)

    @staticmethod
    async def _answer(send: Send, code: int, body: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": code,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _validation_problems(exc: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's 422 detail without the ``input`` it would echo back (it may be the whole body)."""
    return [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]


def create_app(
    settings: Settings,
    *,
    predictor: Predictor | None = None,
    webhook_sink: Callable[[ReceivedWebhook], None] | None = None,
) -> FastAPI:
    """Build the service.

    Args:
        settings: the one configuration object (store, chip cache, MLflow, secrets, limits).
        predictor: the model behind ``/predict`` (default: the MLflow champion over the chip cache).
        webhook_sink: receives verified webhooks (default: the queue that stores them, :mod:`serving.events`).
    """
    resources = build_resources(settings, predictor=predictor, webhook_sink=webhook_sink)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        resources.events.start()
        try:
            yield
        finally:
            resources.events.stop()

    app = FastAPI(
        title="striketracker",
        version="0.1.0",
        summary="When was each building destroyed: dated buildings, evidence, verdicts, exports, ML backend.",
        lifespan=lifespan,
        docs_url=None,  # the Swagger and ReDoc pages load scripts from a CDN; /openapi.json is the schema
        redoc_url=None,
    )
    app.state.resources = resources
    # kept for code that reads them off the app (tests of the labeling package)
    app.state.settings = settings
    app.state.pseudonym_secret = resources.pseudonym_secret

    @app.exception_handler(ServingError)
    async def serving_error(request: Request, exc: ServingError) -> JSONResponse:
        if isinstance(exc, VerdictError):
            logger.info("verdict refused on %s: field %s", request.url.path, exc.field)
            return JSONResponse(
                status_code=422,
                content={"detail": [{"loc": ["body", exc.field], "msg": exc.message, "type": "value_error"}]},
            )
        logger.warning("%s on %s: %s", type(exc).__name__, request.url.path, exc)
        return JSONResponse(status_code=exc.status, content={"detail": exc.detail})

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _validation_problems(exc)})

    for module in (buildings, campaign, exports, chips, webhooks, mlbackend, review, metrics):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(
        EdgeMiddleware,
        limit=settings.max_request_bytes,
        limits={"/predict": settings.max_predict_bytes},
        observe=resources.metrics.observe,
    )
    return app
