"""Conversion between Label Studio JSON and per-date states, against golden payloads."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from labeling.config import STATES
from labeling.convert import (
    TaskSpec,
    chip_url,
    convert_annotation,
    parse_timestamp,
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
    item = task_payload(spec, public_base_url="http://h:1/", model_version="m3")
    assert item["data"]["building_id"] == "B/7"
    assert item["data"]["timeline"][1] == {"date": "2017-05-10", "url": "http://h:1/chips/B%2F7/1.png"}
    (pred,) = item["predictions"]
    assert pred["model_version"] == "m3" and pred["score"] == 0.25
    assert [r["value"]["choices"][0] for r in pred["result"]] == ["intact", "destroyed"]
    assert pred["result"][1]["score"] == 0.6
    assert "predictions" not in task_payload(
        TaskSpec("B1", ("2017-02-03",)), public_base_url="", model_version="m"
    )
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
