"""A JSON body's media type, however it is spelled: the API's own check and the
validation that parses the body later must agree, or a request the check let through
fails in the parser (a 500 anyone could page on-call with)."""

from __future__ import annotations

import json

import pytest

from tests.support.api import call_api

UNKNOWN = {"email": "nobody@example.com", "password": "x"}  # pragma: allowlist secret
WRONG_SIGN_IN = json.dumps(UNKNOWN)


@pytest.mark.parametrize(
    "content_type",
    ["APPLICATION/JSON", "Application/Json", "application/JSON; charset=utf-8"],
)
def test_a_json_media_type_in_capitals_is_json(world, content_type: str) -> None:
    """Media types are case-insensitive (RFC 9110, 8.3.1). Powertools' validation
    compared the header as sent and raised, and the catch-all answered 500."""
    lower = call_api(
        "POST", "/auth/login", headers={"Content-Type": "application/json"}, body=WRONG_SIGN_IN
    )
    answer = call_api(
        "POST", "/auth/login", headers={"Content-Type": content_type}, body=WRONG_SIGN_IN
    )

    assert lower.status == 401
    assert (answer.status, answer.json()["error"]["code"]) == (401, lower.json()["error"]["code"])


def test_a_form_type_in_capitals_is_still_refused(world) -> None:
    answer = call_api(
        "POST",
        "/auth/login",
        headers={"Content-Type": "APPLICATION/X-WWW-FORM-URLENCODED"},
        body="email=a%40b.c&password=x",
    )
    assert (answer.status, answer.json()["error"]["code"]) == (415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("content_type", "status", "code"),
    [
        ("text/plain", 415, "unsupported_media_type"),
        # Powertools' multipart branch raised a bare ValueError on a missing boundary
        ("multipart/form-data", 415, "unsupported_media_type"),
        ("Multipart/Form-Data; boundary=", 415, "unsupported_media_type"),
        ("multipart/form-data-x", 415, "unsupported_media_type"),
        ("application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ("APPLICATION/JSON", 422, "validation_error"),
        ("application/json", 422, "validation_error"),
        # curl -X POST with no -d sends no Content-Type: the body is simply missing
        ("", 422, "validation_error"),
    ],
)
def test_a_body_route_called_without_a_body_is_refused_by_its_media_type(
    world, content_type: str, status: int, code: str
) -> None:
    """The parser reads a body route's media type even when no body came, and our check
    looked only when one did: a bodiless POST sent as text/plain, as JSON in capitals,
    or as multipart without a boundary, was a 500."""
    headers = {"Content-Type": content_type} if content_type else {}
    answer = call_api("POST", "/auth/login", headers=headers)
    assert (answer.status, answer.json()["error"]["code"]) == (status, code)
