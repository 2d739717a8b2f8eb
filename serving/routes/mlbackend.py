"""The Label Studio ML-backend protocol: ``/health``, ``/setup``, ``/predict``, ``/webhook``.

Label Studio calls ``/health`` when a backend is added (1 s timeout), ``/setup`` when it is added and before
every prediction batch (3 s timeout; the answer's ``model_version`` becomes the backend's), ``/predict`` with
every selected task in one request (the "Retrieve predictions" action, or opening a task without predictions),
and ``/webhook`` with project events. Predictions come from the MLflow ``champion``
(:mod:`serving.mlbackend`): one per task, in the same order, with the task score and the model version; a task
whose building the chip cache lacks gets an empty result, so the lengths always match. The webhook is verified
and stored exactly like ``/webhooks/labelstudio``; events other than annotations (``START_TRAINING``,
``PROJECT_UPDATED``, ...) are acknowledged and ignored: training is ML staff's call, through MLflow.

Label Studio sends its own access token in ``/setup``; it is neither kept nor logged.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from model.errors import ModelError
from serving.dependencies import ResourcesDep
from serving.errors import NotReadyError
from serving.mlbackend import prediction_result
from serving.routes.responses import ERRORS
from serving.routes.webhooks import WebhookAck, receive_webhook

__all__ = ["MODEL_CLASS", "router"]

logger = logging.getLogger(__name__)

MODEL_CLASS = "striketracker-dating"
NO_MODEL = "none"

router = APIRouter(tags=["ml-backend"])


class HealthOut(BaseModel):
    status: str
    model_class: str


class SetupIn(BaseModel):
    """What Label Studio sends to ``/setup`` (its token and schema are accepted and dropped)."""

    model_config = ConfigDict(extra="ignore")

    project: str | int | None = None


class SetupOut(BaseModel):
    model_version: str


class TaskIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class PredictIn(BaseModel):
    """Label Studio's prediction request: every selected task, in order."""

    model_config = ConfigDict(extra="ignore")

    tasks: list[TaskIn] = Field(max_length=100_000)


class PredictionOut(BaseModel):
    result: list[dict[str, Any]]
    score: float
    model_version: str


class PredictOut(BaseModel):
    results: list[PredictionOut]
    model_version: str


@router.get("/health", response_model=HealthOut, summary="Liveness (Label Studio ML backend)")
def health() -> HealthOut:
    """Up; answers without touching the model registry (Label Studio allows 1 s)."""
    return HealthOut(status="UP", model_class=MODEL_CLASS)


@router.post(
    "/setup", response_model=SetupOut, summary="Label Studio ML backend setup", responses={422: ERRORS[422]}
)
def setup(body: SetupIn, resources: ResourcesDep) -> SetupOut:
    """The champion's version (re-read from the registry), or ``none`` before any promotion."""
    try:
        version = resources.predictor.model_version(refresh=True)
    except ModelError as exc:
        logger.warning("champion lookup failed in /setup: %s", type(exc).__name__)
        version = None
    return SetupOut(model_version=version or NO_MODEL)


def _predict(resources: Any, body: PredictIn) -> PredictOut:
    ids = [str(t.data.get("building_id", "")) for t in body.tasks]
    try:
        predictions = resources.predictor.predict([b for b in ids if b])
    except ModelError as exc:
        raise NotReadyError("champion model", str(exc)) from None
    version = resources.predictor.model_version() or NO_MODEL
    results = []
    for task, building_id in zip(body.tasks, ids, strict=True):
        timeline = task.data.get("timeline")
        n_dates = len(timeline) if isinstance(timeline, list) else 0
        found = predictions.get(building_id)
        if found is None or n_dates == 0:
            results.append(PredictionOut(result=[], score=0.0, model_version=version))
            resources.metrics.predictions.labels("empty").inc()
            continue
        results.append(PredictionOut(**prediction_result(found, n_dates)))
        resources.metrics.predictions.labels("predicted").inc()
    return PredictOut(results=results, model_version=version)


@router.post(
    "/predict",
    response_model=PredictOut,
    summary="Predictions for Label Studio tasks",
    responses={413: ERRORS[413], 422: ERRORS[422], 503: ERRORS[503]},
)
async def predict(body: PredictIn, resources: ResourcesDep) -> PredictOut:
    """The champion's per-date states with scores for each task, in the order received."""
    return await run_in_threadpool(_predict, resources, body)


@router.post(
    "/webhook",
    response_model=WebhookAck,
    summary="Label Studio project events (ML backend)",
    responses={400: {"description": "malformed webhook body"}, 401: ERRORS[401], 413: ERRORS[413]},
)
async def webhook(request: Request, resources: ResourcesDep) -> WebhookAck:
    """Annotation events are verified by the shared secret and stored after the reply; others are ignored."""
    return await receive_webhook(request, resources)
