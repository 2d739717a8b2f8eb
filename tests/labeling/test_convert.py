"""Conversion between Label Studio JSON and per-date states, against golden payloads."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labeling.config import GRADES, STATES
from labeling.convert import (
    CompactAnswer,
    TaskSpec,
    chip_url,
    compact_answer,
    compact_result,
    convert_annotation,
    parse_timestamp,
    result_to_compact,
    result_to_states,
    states_to_result,
    task_payload,
    volunteer_id,
)
from labeling.errors import ConfigError, ConversionError

DATA = Path(__file__).parent / "data"
SECRET = b"test-pseudonym-key"


@pytest.fixture
def task() -> dict:
    return json.loads((DATA / "export_task.json").read_text())


def test_complete_annotation(task: dict) -> None:
    out = convert_annotation(task["annotations"][0], task["data"], secret=SECRET, task_id=task["id"])
    assert out.problems == ()
    a = out.annotation
    assert a is not None
    assert a.building_id == "B042"
    assert a.states == ("intact", "not_visible", "damaged", "destroyed")
    assert a.comment == "smoke on the second date"
    assert a.external_id == "ls:101"
    assert a.task_id == 17
    assert a.submitted_at == dt.datetime(2026, 11, 21, 6, 42, 10, 676572, tzinfo=dt.UTC)
    assert a.volunteer_id == volunteer_id(5, SECRET)


def test_missing_date_and_unknown_choice_become_not_visible_with_problems(task: dict) -> None:
    out = convert_annotation(task["annotations"][1], task["data"], secret=SECRET, task_id=17)
    assert out.annotation is not None
    assert out.annotation.states == ("intact", "not_visible", "not_visible", "destroyed")
    assert out.annotation.submitted_at == dt.datetime(2026, 11, 21, 7, 5, 0, 500000, tzinfo=dt.UTC)
    text = "\n".join(out.problems)
    assert "'flattened'" in text and "date 2" in text
    assert "date index 9 outside" in text
    assert "no state for date indices [1, 2]" in text
    assert all("annotation 102" in p for p in out.problems)


def test_skipped_and_empty_annotations_are_dropped_with_reason(task: dict) -> None:
    cancelled = convert_annotation(task["annotations"][2], task["data"], secret=SECRET)
    assert cancelled.annotation is None and "was_cancelled" in cancelled.problems[0]
    empty = convert_annotation(task["annotations"][3], task["data"], secret=SECRET)
    assert empty.annotation is None and "no date has a state" in empty.problems[-1]


def test_task_without_building_or_timeline_is_reported(task: dict) -> None:
    out = convert_annotation(task["annotations"][0], {"timeline": []}, secret=SECRET)
    assert out.annotation is None and "building_id" in out.problems[0]
    out = convert_annotation(task["annotations"][0], {"building_id": "B1"}, secret=SECRET)
    assert out.annotation is None and "timeline" in out.problems[0]


def test_volunteer_ids_are_pseudonymous_and_stable() -> None:
    a, b = volunteer_id(5, SECRET), volunteer_id(6, SECRET)
    assert a == volunteer_id(5, SECRET) and a != b
    assert a.startswith("v-") and a[2:] != "5"
    assert volunteer_id(5, b"other-key") != a
    with pytest.raises(ConversionError, match="secret is empty"):
        volunteer_id(5, b"")


def test_round_trip_states_through_result() -> None:
    states = ("intact", "intact", "damaged", "destroyed", "not_visible")
    result = states_to_result(states, comment="ok")
    back, comment, problems = result_to_states(result, len(states))
    assert back == states and comment == "ok" and problems == ()


def test_task_payload_carries_ids_urls_and_prediction() -> None:
    spec = TaskSpec(
        "B/7", ("2017-02-03", "2017-05-10"), ("intact", "destroyed"), score=0.25, state_scores=(0.9, 0.6)
    )
    item = task_payload(spec, public_base_url="http://h:1/", model_version="m3", kind="per_date")
    assert item["data"]["building_id"] == "B/7"
    assert item["data"]["timeline"][1] == {"date": "2017-05-10", "url": "http://h:1/chips/B%2F7/1.png"}
    (pred,) = item["predictions"]
    assert pred["model_version"] == "m3" and pred["score"] == 0.25
    assert [r["value"]["choices"][0] for r in pred["result"]] == ["intact", "destroyed"]
    assert pred["result"][1]["score"] == 0.6
    assert "predictions" not in task_payload(
        TaskSpec("B1", ("2017-02-03",)), public_base_url="", model_version="m", kind="per_date"
    )
    assert "first_damaged_options" not in item["data"]
    assert chip_url("http://a/", "B1", 3) == "http://a/chips/B1/3.png"


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (TaskSpec("", ("2017-01-01",)), "empty building_id"),
        (TaskSpec("B1", ()), "no dates"),
        (TaskSpec("B1", ("2017-01-01",), ("intact", "intact")), "2 predicted states for 1 dates"),
        (TaskSpec("B1", ("2017-01-01",), ("burnt",)), "'burnt' is not one of"),
        (TaskSpec("B1", ("2017-01-01",), ("intact",), score=1.5), "outside 0..1"),
    ],
)
def test_bad_task_specs_are_rejected(spec: TaskSpec, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        task_payload(spec, public_base_url="http://h", model_version="m")


def test_timestamps() -> None:
    assert parse_timestamp("2026-11-21T06:42:10Z").tzinfo is dt.UTC
    with pytest.raises(ConversionError, match="not ISO"):
        parse_timestamp("yesterday")
    assert set(STATES) == {"intact", "damaged", "destroyed", "not_visible"}


# ---------------------------------------------------------------------------- the compact config's answers
DATES = ("2017-02-03", "2017-03-01", "2017-04-01", "2017-05-01", "2017-06-01")
TASK_DATA = {
    "building_id": "B7",
    "timeline": [{"date": d, "url": f"http://h/chips/B7/{t}.png"} for t, d in enumerate(DATES)],
}


def _annotation(result: list[dict]) -> dict:
    return {"id": 9, "completed_by": 3, "result": result, "updated_at": "2026-11-21T06:42:10Z"}


def _region(name: str, choices: list[str]) -> dict:
    return {"from_name": name, "to_name": "bid", "type": "choices", "value": {"choices": choices}}


@pytest.mark.parametrize(
    ("result", "states"),
    [
        # first damaged on the 4th date, destroyed; the 2nd date hidden by cloud
        (
            [
                _region("first_damaged", ["2017-05-01"]),
                _region("grade", ["destroyed"]),
                _region("hidden", ["2017-03-01"]),
            ],
            ("intact", "not_visible", "intact", "destroyed", "destroyed"),
        ),
        # hidden dates right before the first damaged one widen the interval (last intact stays implicit)
        (
            [
                _region("first_damaged", ["2017-05-01"]),
                _region("grade", ["damaged"]),
                _region("hidden", ["2017-03-01", "2017-04-01"]),
            ],
            ("intact", "not_visible", "not_visible", "damaged", "damaged"),
        ),
        (
            [_region("first_damaged", ["never_damaged"]), _region("hidden", ["2017-06-01"])],
            ("intact",) * 4 + ("not_visible",),
        ),
        # a grade left over from before "never damaged" was chosen is ignored
        ([_region("first_damaged", ["never_damaged"]), _region("grade", ["destroyed"])], ("intact",) * 5),
        (
            [_region("first_damaged", ["cannot_tell"]), _region("hidden", ["2017-03-01"])],
            ("not_visible",) * 5,
        ),
        ([_region("first_damaged", ["2017-02-03"]), _region("grade", ["destroyed"])], ("destroyed",) * 5),
    ],
)
def test_compact_answers_become_monotone_per_date_states(result: list[dict], states: tuple[str, ...]) -> None:
    out = convert_annotation(_annotation(result), TASK_DATA, secret=SECRET, task_id=4)
    assert out.problems == ()
    assert out.annotation is not None and out.annotation.states == states


@pytest.mark.parametrize(
    ("result", "states", "problem"),
    [
        (
            [_region("first_damaged", ["2017-04-01"])],
            ("intact", "intact", "damaged", "damaged", "damaged"),
            "grade is None, expected one of ['damaged', 'destroyed']; counted as damaged",
        ),
        (
            [_region("first_damaged", ["2017-04-01"]), _region("grade", ["burnt"])],
            ("intact", "intact", "damaged", "damaged", "damaged"),
            "grade is ['burnt']",
        ),
        (
            [
                _region("first_damaged", ["2017-04-01"]),
                _region("grade", ["destroyed"]),
                _region("hidden", ["2017-04-01", "1999-01-01"]),
            ],
            ("intact", "intact", "destroyed", "destroyed", "destroyed"),
            "is both the first damaged and marked hidden",
        ),
        (
            [_region("first_damaged", ["never_damaged"]), _region("hidden", ["1999-01-01"])],
            ("intact",) * 5,
            "hidden date '1999-01-01' is not one of the task's dates; ignored",
        ),
    ],
)
def test_incomplete_compact_answers_are_kept_with_a_problem(
    result: list[dict], states: tuple[str, ...], problem: str
) -> None:
    out = convert_annotation(_annotation(result), TASK_DATA, secret=SECRET, task_id=4)
    assert out.annotation is not None and out.annotation.states == states
    assert any(problem in p and "annotation 9 (task 4)" in p for p in out.problems)


@pytest.mark.parametrize(
    ("result", "problem"),
    [
        ([_region("grade", ["damaged"])], "first-damaged answer is None"),
        ([_region("first_damaged", ["2017-04-01", "2017-05-01"])], "expected exactly one choice"),
        ([_region("first_damaged", ["yesterday"])], "'yesterday' is neither one of the task's dates"),
    ],
)
def test_compact_answer_without_a_usable_first_damaged_choice_is_dropped(
    result: list[dict], problem: str
) -> None:
    out = convert_annotation(_annotation(result), TASK_DATA, secret=SECRET, task_id=4)
    assert out.annotation is None and any(problem in p for p in out.problems)


@st.composite
def _monotone_reviews(draw: st.DrawFn) -> tuple[str, ...]:
    n = draw(st.integers(1, 15))
    first = draw(st.integers(0, n))
    grade = draw(st.sampled_from(GRADES))
    hidden = draw(st.sets(st.integers(0, n - 1), max_size=n))
    return tuple("not_visible" if t in hidden else ("intact" if t < first else grade) for t in range(n))


@given(_monotone_reviews())
def test_a_monotone_review_survives_the_compact_config_unchanged(states: tuple[str, ...]) -> None:
    answer = compact_answer(states)
    assert answer.states(len(states)) == states
    dates = tuple(f"2017-01-{t + 1:02d}" for t in range(len(states)))
    back, _, problems = result_to_compact(compact_result(answer, dates), dates)
    assert back is not None and back.states(len(states)) == states and problems == ()


@given(st.lists(st.sampled_from(STATES), min_size=1, max_size=15))
def test_any_review_reduces_to_a_monotone_interval(states: list[str]) -> None:
    reduced = compact_answer(states).states(len(states))
    seen = [s for s in reduced if s != "not_visible"]
    assert seen == sorted(seen, key=lambda s: s != "intact")  # intact first, then one grade
    assert len(set(seen) - {"intact"}) <= 1
    hidden = {t for t, s in enumerate(states) if s == "not_visible"}
    widened = {t for t, s in enumerate(reduced) if s == "not_visible"} - hidden
    assert hidden <= {t for t, s in enumerate(reduced) if s == "not_visible"}
    # dates hidden beyond the volunteer's own form one stretch right before the first damaged date (a tie)
    if widened:
        end = next((t for t, s in enumerate(reduced) if s in GRADES), len(states))
        assert max(widened) < end and all(t in hidden | widened for t in range(min(widened), end))


def test_reduction_takes_the_best_fitting_first_damaged_date() -> None:
    # a slip before the change does not move it; the worst grade seen from there on is kept
    assert compact_answer(["intact", "damaged", "intact", "intact", "damaged", "destroyed"]) == CompactAnswer(
        4, "destroyed"
    )
    # a tie (one disagreement either way) keeps its doubt: the latest tied date, the stretch before it hidden
    assert compact_answer(["intact", "damaged", "intact", "damaged"]) == CompactAnswer(
        3, "damaged", frozenset({1, 2})
    )
    tied = ["intact", "intact", "destroyed", "intact", "damaged", "damaged"]
    assert compact_answer(tied) == CompactAnswer(4, "destroyed", frozenset({2, 3}))
    assert compact_answer(tied).states(6) == (
        "intact",
        "intact",
        "not_visible",
        "not_visible",
        "destroyed",
        "destroyed",
    )
    # a tie with "never damaged" becomes never damaged with the doubtful last dates hidden
    assert compact_answer(["intact", "intact", "damaged", "intact"]) == CompactAnswer(
        None, hidden=frozenset({2, 3})
    )
    assert compact_answer(["intact", "not_visible", "intact"]) == CompactAnswer(None, hidden=frozenset({1}))
    assert compact_answer(["not_visible", "not_visible"]) == CompactAnswer(None, cannot_tell=True)
    with pytest.raises(ConfigError, match="'burnt' is not one of"):
        compact_answer(["intact", "burnt"])


def test_compact_task_payload_carries_date_choices_and_a_compact_prediction() -> None:
    spec = TaskSpec("B7", DATES, ("intact", "intact", "not_visible", "destroyed", "destroyed"), score=0.3)
    item = task_payload(spec, public_base_url="http://h", model_version="m")
    first = item["data"]["first_damaged_options"]
    assert [o["value"] for o in first] == [*DATES, "never_damaged", "cannot_tell"]
    assert [o["hotkey"] for o in first] == ["1", "2", "3", "4", "5", "n", "c"]
    assert [o["hotkey"] for o in item["data"]["hidden_options"]] == [f"shift+{k}" for k in "12345"]
    (pred,) = item["predictions"]
    assert {r["from_name"]: r["value"]["choices"] for r in pred["result"]} == {
        "first_damaged": ["2017-05-01"],
        "grade": ["destroyed"],
        "hidden": ["2017-04-01"],
    }
    with pytest.raises(ConfigError, match=r"dates \['2017-02-03'\] appear more than once"):
        task_payload(TaskSpec("B7", ("2017-02-03", "2017-02-03")), public_base_url="", model_version="m")
    with pytest.raises(ConfigError, match="kind 'grid'"):
        task_payload(spec, public_base_url="", model_version="m", kind="grid")


def test_compact_annotations_as_label_studio_exports_them() -> None:
    # recorded from Label Studio 1.23.2: a volunteer answering in the browser (mouse, then keyboard)
    task = json.loads((DATA / "export_task_compact.json").read_text())
    out = [
        convert_annotation(a, task["data"], secret=SECRET, task_id=task["id"]) for a in task["annotations"]
    ]
    assert all(o.problems == () for o in out)
    assert [o.annotation.states for o in out if o.annotation is not None] == [
        ("intact",) * 4 + ("destroyed",) * 2,
        ("intact", "not_visible", "intact", "intact", "damaged", "damaged"),
    ]
