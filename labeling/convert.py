"""Pure conversion between our per-date states and Label Studio task, prediction and annotation JSON.

Outbound: a :class:`TaskSpec` (building id, dates, optional model prediction) becomes one import item with
the chip URLs, the compact config's date choices and an embedded prediction. Inbound: an annotation's
``result`` list becomes one state string per date (:class:`PulledAnnotation`), whichever config produced it.
Raw Label Studio JSON never leaves this package.

The compact config's answer (:class:`CompactAnswer`: first damaged date, grade, hidden dates) becomes the same
monotone per-date states a per-date review gives, by these rules:

- a date chosen as first damaged: every date before it is ``intact``, it and every later date carry the chosen
  grade (``damaged`` or ``destroyed``); the last intact image is left implicit: it is the last date before the
  first damaged one that is not marked hidden, so hidden dates in between widen the interval;
- "never damaged": every date ``intact``;
- dates marked hidden are ``not_visible`` (no evidence) in both cases, except the date chosen as first damaged
  (the volunteer saw the damage there; a problem line notes the contradiction);
- "cannot tell": every date ``not_visible``. The review is kept (the volunteer looked) but carries no evidence;
- a first damaged date without a grade counts as ``damaged`` (the grade does not move the gap), with a problem
  line.

The other way, :func:`compact_answer` reduces per-date states to what the compact config can express: the
first damaged date is the one whose monotone path disagrees with the fewest visible dates, the grade is
``destroyed`` if any visible date from there on is destroyed, and ``not_visible`` dates are the hidden ones. A
damaged-then-destroyed progression therefore comes back destroyed from the first damaged date on. When several
first damaged dates fit equally well (a contradictory stretch, e.g. ``intact damaged intact intact damaged``
with one slip either way), the answer keeps that doubt the one way the compact config can: the latest of them
is the first damaged date and the dates from the earliest on are marked hidden, so the interval spans every
tied date. Picking one tied date instead (the middle one, as before) was a coin flip, wrong about half the
time: on the district aggregation benchmark such reviews held most of the interval answers' loss against
per-date answers (``experiments.benchmarks.aggregation``).

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

from labeling.config import (
    CANNOT_TELL,
    COMMENT_NAME,
    CONFIGS,
    FIRST_DAMAGED_NAME,
    GRADE_NAME,
    GRADES,
    HIDDEN_NAME,
    IMAGE_PREFIX,
    NEVER_DAMAGED,
    STATE_PREFIX,
    STATES,
    TEXT_NAME,
    compact_options,
)
from labeling.errors import ConfigError, ConversionError

__all__ = [
    "CompactAnswer",
    "ConvertedAnnotation",
    "PulledAnnotation",
    "TaskSpec",
    "chip_url",
    "compact_answer",
    "compact_result",
    "convert_annotation",
    "external_id",
    "parse_timestamp",
    "result_to_compact",
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


@dataclass(frozen=True)
class CompactAnswer:
    """What the compact config asks about one building (rules in the module docstring).

    Attributes:
        first_damaged: index of the first date on which the building looks damaged; None when it never does
            (or when the volunteer cannot tell).
        grade: ``damaged`` or ``destroyed`` from that date on; empty when never damaged or cannot tell.
        hidden: indices of the dates marked hidden (cloud, haze, no data).
        cannot_tell: the volunteer could not judge the building at all.
    """

    first_damaged: int | None
    grade: str = ""
    hidden: frozenset[int] = frozenset()
    cannot_tell: bool = False

    def states(self, n_dates: int) -> tuple[str, ...]:
        """The per-date states this answer stands for."""
        if self.cannot_tell:
            return (NOT_VISIBLE,) * n_dates
        first = n_dates if self.first_damaged is None else self.first_damaged
        grade = self.grade or GRADES[0]
        return tuple(
            NOT_VISIBLE
            if t in self.hidden and t != self.first_damaged
            else ("intact" if t < first else grade)
            for t in range(n_dates)
        )


def compact_answer(states: Sequence[str]) -> CompactAnswer:
    """Reduce per-date states to what the compact config can express (rule in the module docstring).

    Raises:
        ConfigError: a state that is not one of :data:`labeling.config.STATES`.
    """
    for t, state in enumerate(states):
        if state not in STATES:
            raise ConfigError(f"date index {t}: state {state!r} is not one of {list(STATES)}")
    n = len(states)
    visible = [s != NOT_VISIBLE for s in states]
    damaged = [s in GRADES for s in states]
    if not any(visible):
        return CompactAnswer(None, cannot_tell=True)
    hidden = frozenset(t for t in range(n) if not visible[t])
    # disagreements of the path "first damaged at j": damaged before j, intact from j on (visible dates only)
    cost = [
        sum(visible[t] and damaged[t] for t in range(j))
        + sum(visible[t] and not damaged[t] for t in range(j, n))
        for j in range(n + 1)
    ]
    best = min(cost)
    candidates = [j for j in range(n + 1) if cost[j] == best and (j == n or visible[j])]
    earliest, first = candidates[0], candidates[-1]
    hidden = hidden | frozenset(range(earliest, first))  # the tied stretch: the volunteer could not tell
    if first == n:
        return CompactAnswer(None, hidden=hidden)
    worst = any(visible[t] and states[t] == "destroyed" for t in range(earliest, n))
    return CompactAnswer(first, "destroyed" if worst else "damaged", hidden)


def compact_result(
    answer: CompactAnswer, dates: Sequence[str], *, comment: str = "", score: float | None = None
) -> list[dict[str, Any]]:
    """A compact answer as a Label Studio ``result`` list (the shape the compact config submits)."""

    def region(name: str, choices: list[str]) -> dict[str, Any]:
        item: dict[str, Any] = {
            "from_name": name,
            "to_name": TEXT_NAME,
            "type": "choices",
            "value": {"choices": choices},
        }
        if score is not None:
            item["score"] = float(score)
        return item

    if answer.cannot_tell:
        first = CANNOT_TELL
    elif answer.first_damaged is None:
        first = NEVER_DAMAGED
    else:
        first = dates[answer.first_damaged]
    result = [region(FIRST_DAMAGED_NAME, [first])]
    if answer.first_damaged is not None and not answer.cannot_tell:
        result.append(region(GRADE_NAME, [answer.grade or GRADES[0]]))
    if answer.hidden and not answer.cannot_tell:
        result.append(region(HIDDEN_NAME, [dates[t] for t in sorted(answer.hidden)]))
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


def task_payload(
    spec: TaskSpec, *, public_base_url: str, model_version: str, kind: str = "compact"
) -> dict[str, Any]:
    """One Label Studio import item: task data, plus the model prediction when the spec has one.

    Args:
        spec: the building.
        public_base_url: where Label Studio's browser fetches chips.
        model_version: the prediction's model version.
        kind: the project's labeling config (:data:`labeling.config.CONFIGS`): the compact config needs its
            date choices in the task data and gets its prediction as a compact answer.

    Raises:
        ConfigError: an empty id, no dates, repeated dates (compact), predicted states or scores that do not
            match the dates, a score outside 0..1, or an unknown ``kind``.
    """
    if kind not in CONFIGS:
        raise ConfigError(f"labeling config kind {kind!r}; use one of {list(CONFIGS)}")
    if not spec.building_id:
        raise ConfigError("task spec has an empty building_id; every task needs the building's stable id")
    if not spec.dates:
        raise ConfigError(f"building {spec.building_id}: no dates; a task needs at least one chip")
    n = len(spec.dates)
    if kind == "compact" and len(set(spec.dates)) != n:
        repeated = sorted({d for d in spec.dates if spec.dates.count(d) > 1})
        raise ConfigError(
            f"building {spec.building_id}: dates {repeated} appear more than once; the compact config names a "
            "date by its day, so give each acquisition its own date (or use the per_date config)"
        )
    if spec.predicted_states and len(spec.predicted_states) != n:
        raise ConfigError(
            f"building {spec.building_id}: {len(spec.predicted_states)} predicted states for {n} dates; "
            "give one state per date"
        )
    if spec.state_scores and len(spec.state_scores) != n:
        raise ConfigError(f"building {spec.building_id}: {len(spec.state_scores)} state scores for {n} dates")
    data: dict[str, Any] = {
        "building_id": spec.building_id,
        "n_dates": n,
        "timeline": [
            {"date": d, "url": chip_url(public_base_url, spec.building_id, t)}
            for t, d in enumerate(spec.dates)
        ],
    }
    if kind == "compact":
        data.update(compact_options(spec.dates))
    item: dict[str, Any] = {"data": data}
    if spec.predicted_states:
        if spec.score is not None and not 0.0 <= spec.score <= 1.0:
            raise ConfigError(f"building {spec.building_id}: score {spec.score} outside 0..1")
        if kind == "compact":
            result = compact_result(compact_answer(spec.predicted_states), spec.dates, score=spec.score)
        else:
            result = states_to_result(spec.predicted_states, spec.state_scores)
        item["predictions"] = [
            {
                "model_version": model_version,
                "score": float(spec.score) if spec.score is not None else 0.0,
                "result": result,
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


def _single(region: Mapping[str, Any]) -> list[str] | None:
    value = region.get("value")
    choices = value.get("choices") if isinstance(value, Mapping) else None
    return [str(c) for c in choices] if isinstance(choices, list) else None


def result_to_compact(
    result: Sequence[Mapping[str, Any]], dates: Sequence[str], *, label: str = "annotation"
) -> tuple[CompactAnswer | None, str, tuple[str, ...]]:
    """Read a compact config's ``result`` list (rules in the module docstring).

    Args:
        result: the annotation's result regions.
        dates: the task's ISO dates, in order.
        label: how problem lines name the annotation.

    Returns:
        ``(answer, comment, problems)``; the answer is None when it has no usable first-damaged choice.
    """
    index = {d: t for t, d in enumerate(dates)}
    first: list[str] | None = None
    grade: list[str] | None = None
    hidden: list[str] = []
    comment = ""
    problems: list[str] = []
    for region in result:
        name = str(region.get("from_name", ""))
        if name == COMMENT_NAME or region.get("type") == "textarea":
            value = region.get("value") or {}
            texts = value.get("text") if isinstance(value, Mapping) else None
            if isinstance(texts, list):
                comment = " ".join(str(t) for t in texts).strip()
        elif name == FIRST_DAMAGED_NAME:
            first = _single(region)
        elif name == GRADE_NAME:
            grade = _single(region)
        elif name == HIDDEN_NAME:
            hidden = _single(region) or []
        else:
            problems.append(f"{label}: region from_name={name!r} is not part of the compact config; ignored")
    if not first or len(first) != 1:
        problems.append(f"{label}: first-damaged answer is {first!r}, expected exactly one choice; skipped")
        return None, comment, tuple(problems)
    choice = first[0]
    if choice not in index and choice not in (NEVER_DAMAGED, CANNOT_TELL):
        problems.append(
            f"{label}: first-damaged answer {choice!r} is neither one of the task's dates nor "
            f"{NEVER_DAMAGED!r}/{CANNOT_TELL!r}; skipped"
        )
        return None, comment, tuple(problems)
    if choice == CANNOT_TELL:
        return CompactAnswer(None, cannot_tell=True), comment, tuple(problems)
    marked: set[int] = set()
    for date in hidden:
        if date in index:
            marked.add(index[date])
        else:
            problems.append(f"{label}: hidden date {date!r} is not one of the task's dates; ignored")
    if choice == NEVER_DAMAGED:
        return CompactAnswer(None, hidden=frozenset(marked)), comment, tuple(problems)
    t = index[choice]
    if t in marked:
        problems.append(
            f"{label}: date {choice} is both the first damaged and marked hidden; counted as first damaged"
        )
    if grade is None or len(grade) != 1 or grade[0] not in GRADES:
        problems.append(f"{label}: grade is {grade!r}, expected one of {list(GRADES)}; counted as damaged")
        chosen = GRADES[0]
    else:
        chosen = grade[0]
    return CompactAnswer(t, chosen, frozenset(marked)), comment, tuple(problems)


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
    if any(r.get("from_name") in (FIRST_DAMAGED_NAME, GRADE_NAME, HIDDEN_NAME) for r in result):
        dates = [str(item.get("date", "")) if isinstance(item, Mapping) else "" for item in timeline]
        answer, comment, problems = result_to_compact(result, dates, label=label)
        if answer is None:
            return ConvertedAnnotation(None, problems)
        states = answer.states(len(timeline))
    else:
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
