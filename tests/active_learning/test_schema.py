"""The long annotation table is validated at the door: bad records are refused with a reason, good ones kept."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from active_learning.errors import AnnotationTableError
from active_learning.schema import (
    COL_BUILDING,
    COL_DATE_INDEX,
    COL_EXTERNAL_ID,
    COL_STATE,
    COLUMNS,
    Annotation,
    State,
    annotations_to_table,
    table_to_annotations,
    validate_table,
)

IN, D, X, N = State.INTACT, State.DAMAGED, State.DESTROYED, State.NOT_VISIBLE
WHEN = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


def ann(
    ext: str,
    states: tuple[State, ...],
    building: str = "b1",
    volunteer: str = "v1",
    source: str = "simulated",
):
    return Annotation(building, volunteer, source, states, WHEN, ext)  # type: ignore[arg-type]


def test_round_trip_keeps_every_annotation() -> None:
    annotations = [ann("a", (IN, IN, D, X)), ann("b", (IN, N, N, D), volunteer="v2")]
    table = annotations_to_table(annotations)
    assert list(table.columns) == list(COLUMNS)
    result = validate_table(table, building_ids={"b1"}, n_dates=4, strict=True)
    assert result.rejects == ()
    assert table_to_annotations(result.table, 4) == annotations


def test_input_table_is_not_modified() -> None:
    table = annotations_to_table([ann("a", (IN, D))])
    before = table.copy()
    validate_table(table, n_dates=2)
    pd.testing.assert_frame_equal(table, before)


@pytest.mark.parametrize(
    ("column", "value", "field", "needle"),
    [
        (COL_BUILDING, "nope", COL_BUILDING, "unknown building"),
        (COL_DATE_INDEX, 9, COL_DATE_INDEX, "0..3"),
        (COL_DATE_INDEX, -1, COL_DATE_INDEX, "0..3"),
        (COL_STATE, "smouldering", COL_STATE, "unknown state"),
    ],
)
def test_bad_records_are_refused_with_a_reason(column: str, value: object, field: str, needle: str) -> None:
    table = annotations_to_table([ann("good", (IN, IN, D, D)), ann("bad", (IN, IN, D, D), volunteer="v2")])
    table[column] = table[column].astype(object)
    table.loc[(table[COL_EXTERNAL_ID] == "bad") & (table[COL_DATE_INDEX] == 1), column] = value
    result = validate_table(table, building_ids={"b1"}, n_dates=4)
    assert [r.external_id for r in result.rejects] == ["bad"]
    assert result.rejects[0].field == field
    assert needle in result.rejects[0].reason
    assert set(result.table[COL_EXTERNAL_ID]) == {"good"}
    with pytest.raises(AnnotationTableError, match="bad"):
        validate_table(table, building_ids={"b1"}, n_dates=4, strict=True)


def test_missing_columns_name_the_fix() -> None:
    with pytest.raises(AnnotationTableError, match="annotations_to_table"):
        validate_table(pd.DataFrame({COL_BUILDING: ["b1"]}))


def test_duplicate_external_id_with_other_content_is_refused_but_exact_repeat_is_idempotent() -> None:
    same = annotations_to_table([ann("a", (IN, D)), ann("a", (IN, D))])
    assert len(validate_table(same, n_dates=2, strict=True).table) == 2
    clash = annotations_to_table([ann("a", (IN, D)), ann("a", (IN, D), building="b2")])
    result = validate_table(clash, n_dates=2)
    assert result.table.empty
    assert "duplicate external id" in result.rejects[0].reason
    states = annotations_to_table([ann("a", (IN, D)), ann("a", (IN, IN))])
    assert "two different states" in validate_table(states, n_dates=2).rejects[0].reason


def test_gold_contradicting_itself_or_each_other_is_refused() -> None:
    self_contradicting = ann("g1", (IN, D, IN, D), volunteer="expert", source="expert")
    result = validate_table(annotations_to_table([self_contradicting]), n_dates=4)
    assert "contradicts itself" in result.rejects[0].reason
    # volunteers may be inconsistent: that is evidence, not an error
    assert not validate_table(annotations_to_table([ann("v", (IN, D, IN, D))]), n_dates=4).rejects

    early = ann("g2", (IN, D, D, D), volunteer="e1", source="expert")
    late = ann("g3", (IN, IN, IN, D), volunteer="e2", source="expert")
    agreeing = ann("g4", (IN, N, D, D), building="b2", volunteer="e1", source="expert")
    result = validate_table(annotations_to_table([early, late, agreeing]), n_dates=4)
    assert {r.external_id for r in result.rejects} == {"g2", "g3"}
    assert "contradict each other" in result.rejects[0].reason
    assert set(result.table[COL_EXTERNAL_ID]) == {"g4"}
