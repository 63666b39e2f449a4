"""What a 422 says of each failure: a fixed phrase per kind of pydantic error, so a
client learns what to fix and nothing of its input or of pydantic's wording returns."""

from __future__ import annotations

from typing import Any

import pytest

from functions.shared.errors import PROBLEMS, ValidationFailed, problem_of, to_http


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("missing", "required"),
        ("extra_forbidden", "has a field this request does not take"),
        ("int_parsing", "of the wrong type or form"),
        ("string_type", "of the wrong type or form"),
        ("uuid_parsing", "of the wrong type or form"),
        ("string_too_long", "of the wrong length"),
        ("too_short", "of the wrong length"),
        ("greater_than_equal", "out of range"),
        ("less_than", "out of range"),
        ("literal_error", "not one of the allowed values"),
        ("value_error", "not a valid value"),
        ("a_kind_pydantic_adds_later", "not a valid value"),
    ],
)
def test_each_kind_of_failure_has_a_fixed_phrase(kind: str, problem: str):
    assert problem_of(kind) == problem


def test_a_refusal_lists_each_field_once_with_each_of_its_problems():
    errors: list[dict[str, Any]] = [
        {"type": "missing", "loc": ("body", "targets"), "msg": "Field required", "input": {}},
        {"type": "extra_forbidden", "loc": ("body", "secret_guess"), "input": "hunter2"},
        {"type": "extra_forbidden", "loc": ("body", "other"), "input": "x"},
        {"type": "string_too_long", "loc": ("body", "reason"), "input": "a" * 300},
        {"type": "string_pattern_mismatch", "loc": ("body", "reason"), "input": "<b>"},
    ]

    body = to_http(ValidationFailed.from_errors(errors)).body["error"]

    assert body["fields"] == ["body", "body.reason", "body.targets"]
    assert body["problems"] == [
        {"field": "body", "problem": PROBLEMS["extra_forbidden"]},
        {"field": "body.reason", "problem": "not in the expected format"},
        {"field": "body.reason", "problem": "of the wrong length"},
        {"field": "body.targets", "problem": "required"},
    ]
    text = str(body)
    for sent in ("secret_guess", "hunter2", "aaaa", "<b>", "Field required"):
        assert sent not in text
