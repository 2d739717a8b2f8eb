"""Pure conversion between our per-date states and Label Studio task, prediction and annotation JSON.

Outbound: a :class:`TaskSpec` (building id, dates, optional model prediction) becomes one import item with
the chip URLs and an embedded prediction. Inbound: an annotation's ``result`` list becomes one state string
per date (:class:`PulledAnnotation`). Raw Label Studio JSON never leaves this package.

Inbound problems are reported, not fatal, where the rest of the annotation is still evidence: a date without
a choice, or with a choice we do not know, becomes ``not_visible`` (no evidence) and a problem line names the
annotation, the date index and the value. Annotations that carry no usable state at all are dropped with a
problem line.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from labeling.config import COMMENT_NAME, IMAGE_PREFIX, STATE_PREFIX, STATES, TEXT_NAME
from labeling.errors import ConfigError, ConversionError

__all__ = [
    "ConvertedAnnotation",
    "PulledAnnotation",
    "TaskSpec",
    "chip_url",
    "convert_annotation",
    "external_id",
    "parse_timestamp",
    "result_to_states",
    "states_to_result",
    "task_payload",
    "volunteer_id",
]

NOT_VISIBLE = "not_visible"


@dataclass(frozen=True)
class TaskSpec:
    """One building to push as a Label Studio task.

    Attributes:
        building_id: the Building's stable id (carried, never a position).
        dates: ISO dates of the timeline, in order; date index t is the chip ``{t}.png``.
        predicted_states: the model's most likely state per date, or empty for no prediction.
        score: task-level confidence in 0..1 (low = uncertain = served first by uncertainty sampling).
        state_scores: optional per-date confidence of ``predicted_states``.
    """

    building_id: str
    dates: tuple[str, ...]
    predicted_states: tuple[str, ...] = ()
    score: float | None = None
    state_scores: tuple[float, ...] = ()


@dataclass(frozen=True)
class PulledAnnotation:
    """One volunteer's review of one building, as pulled from Label Studio.

    Attributes:
        building_id: the Building's id (from the task data).
        volunteer_id: pseudonymous id, an HMAC of the Label Studio user id (never an email or name).
        states: one of ``intact|damaged|destroyed|not_visible`` per date, in date order.
        submitted_at: last submission time (UTC).
        external_id: ``ls:<annotation id>``, the idempotency key.
        comment: the volunteer's optional comment.
        task_id: the Label Studio task id.
    """

    building_id: str
    volunteer_id: str
    states: tuple[str, ...]
    submitted_at: dt.datetime
    external_id: str
    comment: str = ""
    task_id: int = 0


@dataclass(frozen=True)
class ConvertedAnnotation:
    """Outcome of converting one raw annotation: the annotation (None if unusable) and problem lines."""

    annotation: PulledAnnotation | None
    problems: tuple[str, ...] = ()


def external_id(annotation_id: int) -> str:
    """The idempotency key of a Label Studio annotation."""
    return f"ls:{annotation_id}"


def volunteer_id(user_id: int, secret: bytes) -> str:
    """Pseudonymous volunteer id: ``v-`` + 16 hex chars of HMAC-SHA256(secret, user id)."""
    if not secret:
        raise ConversionError("volunteer pseudonym secret is empty; pass the secret file's content")
    digest = hmac.new(secret, f"labelstudio-user:{int(user_id)}".encode(), hashlib.sha256).hexdigest()
    return f"v-{digest[:16]}"


def chip_url(public_base_url: str, building_id: str, date_index: int) -> str:
    """URL of one chip PNG served by the striketracker service."""
    return f"{public_base_url.rstrip('/')}/chips/{quote(building_id, safe='')}/{int(date_index)}.png"


def states_to_result(
    states: Sequence[str], scores: Sequence[float] = (), *, comment: str = ""
) -> list[dict[str, Any]]:
    """Per-date states (and an optional comment) as a Label Studio ``result`` list."""
    result: list[dict[str, Any]] = []
    for t, state in enumerate(states):
        if state not in STATES:
            raise ConfigError(f"date index {t}: state {state!r} is not one of {list(STATES)}")
        item: dict[str, Any] = {
            "from_name": f"{STATE_PREFIX}{t}",
            "to_name": f"{IMAGE_PREFIX}{t}",
            "type": "choices",
            "value": {"choices": [state]},
        }
        if scores:
            item["score"] = float(scores[t])
        result.append(item)
    if comment:
        result.append(
            {
                "from_name": COMMENT_NAME,
                "to_name": TEXT_NAME,
                "type": "textarea",
                "value": {"text": [comment]},
            }
        )
    return result


def task_payload(spec: TaskSpec, *, public_base_url: str, model_version: str) -> dict[str, Any]:
    """One Label Studio import item: task data, plus the model prediction when the spec has one."""
    if not spec.building_id:
        raise ConfigError("task spec has an empty building_id; every task needs the building's stable id")
    if not spec.dates:
        raise ConfigError(f"building {spec.building_id}: no dates; a task needs at least one chip")
    n = len(spec.dates)
    if spec.predicted_states and len(spec.predicted_states) != n:
        raise ConfigError(
            f"building {spec.building_id}: {len(spec.predicted_states)} predicted states for {n} dates; "
            "give one state per date"
        )
    if spec.state_scores and len(spec.state_scores) != n:
        raise ConfigError(f"building {spec.building_id}: {len(spec.state_scores)} state scores for {n} dates")
    item: dict[str, Any] = {
        "data": {
            "building_id": spec.building_id,
            "n_dates": n,
            "timeline": [
                {"date": d, "url": chip_url(public_base_url, spec.building_id, t)}
                for t, d in enumerate(spec.dates)
            ],
        }
    }
    if spec.predicted_states:
        if spec.score is not None and not 0.0 <= spec.score <= 1.0:
            raise ConfigError(f"building {spec.building_id}: score {spec.score} outside 0..1")
        item["predictions"] = [
            {
                "model_version": model_version,
                "score": float(spec.score) if spec.score is not None else 0.0,
                "result": states_to_result(spec.predicted_states, spec.state_scores),
            }
        ]
    return item


def parse_timestamp(value: object) -> dt.datetime:
    """Parse a Label Studio ISO timestamp (``...Z`` or with offset) to an aware UTC datetime."""
    if not isinstance(value, str) or not value:
        raise ConversionError(f"timestamp {value!r} is not an ISO string")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConversionError(f"timestamp {value!r} is not ISO 8601") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def result_to_states(
    result: Sequence[Mapping[str, Any]], n_dates: int, *, label: str = "annotation"
) -> tuple[tuple[str, ...], str, tuple[str, ...]]:
    """Turn a ``result`` list into per-date states, the comment and problem lines.

    Args:
        result: the annotation's result regions.
        n_dates: number of dates in the task's timeline.
        label: how problem lines name the annotation.

    Returns:
        ``(states, comment, problems)``; dates without a valid choice are ``not_visible``.
    """
    states: list[str | None] = [None] * n_dates
    comment = ""
    problems: list[str] = []
    for region in result:
        name = str(region.get("from_name", ""))
        value = region.get("value") or {}
        if name == COMMENT_NAME or region.get("type") == "textarea":
            texts = value.get("text") if isinstance(value, Mapping) else None
            if isinstance(texts, list):
                comment = " ".join(str(t) for t in texts).strip()
            continue
        if not name.startswith(STATE_PREFIX):
            problems.append(f"{label}: region from_name={name!r} is not a date state; ignored")
            continue
        try:
            t = int(name[len(STATE_PREFIX) :])
        except ValueError:
            problems.append(f"{label}: region from_name={name!r} has no date index; ignored")
            continue
        if not 0 <= t < n_dates:
            problems.append(f"{label}: date index {t} outside the timeline's 0..{n_dates - 1}; ignored")
            continue
        choices = value.get("choices") if isinstance(value, Mapping) else None
        if not isinstance(choices, list) or len(choices) != 1:
            problems.append(f"{label}: date {t} has choices {choices!r}, expected exactly one; not_visible")
            continue
        choice = str(choices[0])
        if choice not in STATES:
            problems.append(
                f"{label}: date {t} has unknown choice {choice!r} (expected one of {list(STATES)}); not_visible"
            )
            continue
        states[t] = choice
    missing = [t for t, s in enumerate(states) if s is None]
    if missing and len(missing) < n_dates:
        problems.append(f"{label}: no state for date indices {missing}; counted as not_visible")
    return tuple(s if s is not None else NOT_VISIBLE for s in states), comment, tuple(problems)


def _user_id(completed_by: object) -> int | None:
    if isinstance(completed_by, Mapping):
        completed_by = completed_by.get("id")
    if isinstance(completed_by, bool):
        return None
    if isinstance(completed_by, int):
        return completed_by
    if isinstance(completed_by, str) and completed_by.isdigit():
        return int(completed_by)
    return None


def convert_annotation(
    annotation: Mapping[str, Any], task_data: Mapping[str, Any], *, secret: bytes, task_id: int = 0
) -> ConvertedAnnotation:
    """Convert one raw Label Studio annotation of a timeline task.

    Args:
        annotation: the annotation JSON (``id``, ``completed_by``, ``result``, ``updated_at``...).
        task_data: the task's ``data`` (``building_id``, ``timeline``).
        secret: key of the volunteer pseudonyms.
        task_id: the Label Studio task id, kept for reference.

    Returns:
        The converted annotation, or None with the reason when it carries no evidence or is malformed.
    """
    ann_id = annotation.get("id")
    label = f"annotation {ann_id} (task {task_id or annotation.get('task', '?')})"
    if not isinstance(ann_id, int):
        return ConvertedAnnotation(None, (f"{label}: missing integer 'id'; skipped",))
    building = task_data.get("building_id")
    timeline = task_data.get("timeline")
    if not isinstance(building, str) or not building:
        return ConvertedAnnotation(None, (f"{label}: task data has no building_id; skipped",))
    if not isinstance(timeline, list) or not timeline:
        return ConvertedAnnotation(None, (f"{label}: task data has no timeline list; skipped",))
    if annotation.get("was_cancelled"):
        return ConvertedAnnotation(
            None, (f"{label}: skipped by the volunteer (was_cancelled); not evidence",)
        )
    user = _user_id(annotation.get("completed_by"))
    if user is None:
        return ConvertedAnnotation(
            None, (f"{label}: completed_by={annotation.get('completed_by')!r} is not a user id; skipped",)
        )
    result = annotation.get("result")
    if not isinstance(result, list):
        return ConvertedAnnotation(
            None, (f"{label}: result is {type(result).__name__}, expected a list; skipped",)
        )
    states, comment, problems = result_to_states(result, len(timeline), label=label)
    if all(s == NOT_VISIBLE for s in states) and not any(
        str(r.get("from_name", "")).startswith(STATE_PREFIX) for r in result
    ):
        return ConvertedAnnotation(None, (*problems, f"{label}: no date has a state; skipped"))
    stamp = annotation.get("updated_at") or annotation.get("created_at")
    try:
        submitted = parse_timestamp(stamp)
    except ConversionError as exc:
        return ConvertedAnnotation(None, (*problems, f"{label}: {exc}; skipped"))
    return ConvertedAnnotation(
        PulledAnnotation(
            building_id=building,
            volunteer_id=volunteer_id(user, secret),
            states=states,
            submitted_at=submitted,
            external_id=external_id(ann_id),
            comment=comment,
            task_id=int(task_id or annotation.get("task") or 0),
        ),
        problems,
    )
