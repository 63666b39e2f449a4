"""Every response carries the security headers, whatever path produced it."""

from __future__ import annotations

import pytest

from functions.api.middleware.security_headers import SECURITY_HEADERS, apply_security_headers
from tests.support.api import call_api

EXPECTED = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains; preload",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-XSS-Protection": "0",
}


def assert_secure(headers: dict[str, str]) -> None:
    for name, value in EXPECTED.items():
        assert headers.get(name) == value, name
    policy = headers["Permissions-Policy"]
    for feature in ("camera=()", "microphone=()", "geolocation=()", "payment=()"):
        assert feature in policy
    lowered = {name.lower() for name in headers}
    assert "server" not in lowered
    assert "x-powered-by" not in lowered


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/health", {}, 200),
        ("GET", "/no-such-route", {}, 404),
        ("DELETE", "/health", {}, 405),
        ("GET", "/admin/users", {}, 403),
        ("POST", "/health", {"body": "{", "headers": {"Content-Type": "application/json"}}, 400),
        ("POST", "/health", {"body": "x", "headers": {"Content-Type": "text/plain"}}, 415),
    ],
    ids=["ok", "not-found", "wrong-method", "admin-denied", "malformed-json", "wrong-type"],
)
def test_headers_on_every_kind_of_response(method, path, kwargs, status):
    # Given any request, successful or refused at any layer
    # When the API answers
    response = call_api(method, path, **kwargs)
    # Then the status is the expected one and every security header is present
    assert response.status == status
    assert_secure(response.headers)


def test_headers_on_unexpected_exception(monkeypatch):
    # Given a route that fails with a bug deep in its logic
    from functions.api.recalls import logic

    def broken(**_: object) -> None:
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr(logic, "search_recalls", broken)
    # When it is called
    response = call_api("GET", "/recalls")
    # Then the caller gets a 500 with a correlation id, no stack trace, no exception text
    assert response.status == 500
    body = response.json()
    assert body["error"]["code"] == "internal_error"
    assert body["error"]["correlation_id"]
    assert "hunter2" not in response.body
    assert "Traceback" not in response.body
    assert_secure(response.headers)


def test_route_cannot_weaken_a_security_header():
    # Given a response whose handler tried to allow caching and advertise a server
    response = {
        "statusCode": 200,
        "multiValueHeaders": {"cache-control": ["public, max-age=600"], "Server": ["nginx/1.2"]},
        "body": "{}",
    }
    # When the headers are applied
    secured = apply_security_headers(response)
    # Then the secure value wins and the server banner is gone
    headers = secured["multiValueHeaders"]
    assert headers["Cache-Control"] == ["no-store"]
    assert "cache-control" not in headers
    assert "Server" not in headers
    assert set(SECURITY_HEADERS) <= set(headers)
