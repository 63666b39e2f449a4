"""The pagination cursor: round-trips a position, refuses anything else with a 400."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.api.recalls.cursor import InvalidCursor, decode_cursor, encode_cursor


@given(st.dates(), st.integers(min_value=1, max_value=2**63 - 1))
def test_a_cursor_round_trips_its_position(day: date, recall_id: int):
    assert decode_cursor(encode_cursor(day, recall_id)) == (day, recall_id)


@given(st.text(max_size=80))
def test_any_other_text_is_an_invalid_cursor_or_a_valid_position(token: str):
    # Never another exception type (that would be a 500), never an impossible position
    try:
        day, recall_id = decode_cursor(token)
    except InvalidCursor:
        return
    assert isinstance(day, date)
    assert 0 < recall_id <= 2**63 - 1


def test_an_invalid_cursor_is_a_400():
    assert InvalidCursor().status == 400


@pytest.mark.parametrize(
    "token",
    [
        "",
        "x" * 65,
        encode_cursor(date(2024, 1, 1), 1)[:-2] + "!!",
        "WyIyMDI0LTAxLTAxIiwwXQ",  # id 0
        "WyIyMDI0LTAxLTAxIiwiMSJd",  # id as a string
        "WyIyMDI0LTAxLTAxIiwxLjVd",  # id as a float
        "WyIyMDI0LTEzLTAxIiwxXQ",  # month 13
        "WyIyMDI0LTAxLTAxIiwxLDJd",  # three elements
        "WyIyMDI0LTAxLTAxIix0cnVlXQ",  # id true
    ],
)
def test_malformed_cursors_are_refused(token: str):
    with pytest.raises(InvalidCursor):
        decode_cursor(token)
