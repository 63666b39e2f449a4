"""The pagination cursor: round-trips a position of the query that made it, refuses a
cursor of another query (or from before cursors named their query) with a 400 that
says to start again, and anything else with a 400."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.api.admin import pages
from functions.api.recalls.cursor import (
    MAX_CURSOR_LENGTH,
    CursorMismatch,
    InvalidCursor,
    decode_cursor,
    encode_cursor,
    query_digest,
)
from functions.api.recalls.logic import search_query

QUERY = search_query("crib", "Nestwell", None)
OTHER = search_query("crib", None, None)


def _raw(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@given(st.dates(), st.integers(min_value=1, max_value=2**63 - 1))
def test_a_cursor_round_trips_its_position(day: date, recall_id: int):
    token = encode_cursor(day, recall_id, QUERY)
    assert len(token) <= MAX_CURSOR_LENGTH
    assert decode_cursor(token, QUERY) == (day, recall_id)


@given(st.text(max_size=120))
def test_any_other_text_is_an_invalid_cursor_or_a_valid_position(token: str):
    # Never another exception type (that would be a 500), never an impossible position
    try:
        day, recall_id = decode_cursor(token, QUERY)
    except (InvalidCursor, CursorMismatch):
        return
    assert isinstance(day, date)
    assert 0 < recall_id <= 2**63 - 1


def test_both_refusals_are_400s_and_say_different_things():
    assert InvalidCursor().status == CursorMismatch().status == 400
    assert CursorMismatch().code == "cursor_mismatch"
    assert "without the cursor" in CursorMismatch().message
    assert CursorMismatch().message != InvalidCursor().message


def test_a_cursor_of_another_query_is_refused_as_another_query():
    token = encode_cursor(date(2024, 3, 5), 5, QUERY)
    with pytest.raises(CursorMismatch):
        decode_cursor(token, OTHER)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (("crib", None, None), ("crib", "Nestwell", None)),
        (("crib", None, None), ("stroller", None, None)),
        (("crib", None, None), ("crib", None, date(2024, 1, 1))),
        (("crib", None, None), (None, "crib", None)),  # a search term is not a brand
        ((None, None, None), (None, None, date(2024, 1, 1))),
    ],
)
def test_every_filter_is_part_of_the_digest(one, other):
    assert search_query(*one) != search_query(*other)


def test_the_list_and_its_order_are_part_of_the_digest():
    filters = {"owner_id": None}
    assert query_digest("GET /admin/api-keys ORDER BY created_at, key_id", filters) != (
        query_digest("GET /admin/api-keys ORDER BY created_at DESC, key_id DESC", filters)
    )
    assert pages.list_query("GET /admin/users") != search_query(None, None, None)


def test_a_bare_pair_from_before_cursors_named_their_query_is_refused_as_another_query():
    # What encode_cursor made before the digest: the compact JSON pair, base64url
    legacy = "WyIyMDI0LTAzLTA1Iiw1XQ"
    assert base64.urlsafe_b64decode(legacy + "==") == b'["2024-03-05",5]'
    with pytest.raises(CursorMismatch):
        decode_cursor(legacy, QUERY)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "x" * (MAX_CURSOR_LENGTH + 1),
        encode_cursor(date(2024, 1, 1), 1, QUERY)[:-2] + "!!",
        _raw(["2024-01-01", 0, QUERY]),  # id 0
        _raw(["2024-01-01", "1", QUERY]),  # id as a string
        _raw(["2024-01-01", 1.5, QUERY]),  # id as a float
        _raw(["2024-13-01", 1, QUERY]),  # month 13
        _raw(["2024-01-01", True, QUERY]),  # id true
        _raw(["2024-01-01", 1, QUERY, 2]),  # four elements
        _raw(["2024-01-01", 1, QUERY.upper()]),  # a digest is lower-case hex
        _raw(["2024-01-01", 1, QUERY[:-1]]),  # too short
        _raw(["2024-01-01", 1, None]),
        _raw(["2024-01-01", 1, 7]),
        _raw({"after": ["2024-01-01", 1], "query": QUERY}),
        # A bare pair that was never issued is not valid, not "another query"
        _raw(["2024-01-01", 0]),
        _raw(["2024-01-01", "1"]),
    ],
)
def test_malformed_cursors_are_refused(token: str):
    with pytest.raises(InvalidCursor):
        decode_cursor(token, QUERY)


def test_an_admin_cursor_round_trips_and_is_bound_to_its_query():
    moment = datetime(2026, 1, 1, 12, 30, 15, 123456, tzinfo=UTC)
    row_id = "00000000-0000-4000-8000-000000000000"
    query = pages.list_query("GET /admin/users")
    # The longest a user cursor gets (microseconds, a UUID) still fits its limit
    token = pages.encode_cursor(moment, row_id, query)
    assert len(token) <= pages.MAX_ADMIN_CURSOR_LENGTH
    assert pages.decode_cursor(token, lambda _: True, query) == (moment, row_id)
    other = pages.list_query("GET /admin/users", {"role": "admin"})
    with pytest.raises(CursorMismatch):
        pages.decode_cursor(token, lambda _: True, other)
    # A row id of the wrong shape is not valid, whichever query it is sent with
    with pytest.raises(InvalidCursor):
        pages.decode_cursor(token, lambda _: False, query)
    legacy = _raw([moment.isoformat(), row_id])
    with pytest.raises(CursorMismatch):
        pages.decode_cursor(legacy, lambda _: True, query)
