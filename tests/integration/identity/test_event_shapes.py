"""Events the edge must not half-read: malformed shapes and two maps that disagree.

API Gateway's REST proxy integration sends strings where the edge reads strings,
and fills the single- and multi-value maps of headers and query parameters with
the same request. An event that does neither (a direct invoke, an HTTP API v2
payload, a hand-built test event) must get a 400 with the security headers, not
a 500 from a guard or a Powertools property, and no guard may read one map while
the router or the identity layer reads the other.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from functions.api.middleware.security_headers import SECURITY_HEADERS
from ops.apigw import LocalLambdaContext, response_headers, rest_event

ATTACK = "' OR '1'='1' --"
SIGN_IN_BODY = '{"email":"a@example.com","password":"pw"}'  # pragma: allowlist secret


def invoke(event: Any) -> tuple[int, dict[str, str], dict[str, Any]]:
    from functions.api.handler import lambda_handler

    response = lambda_handler(event, LocalLambdaContext())
    return response["statusCode"], response_headers(response), json.loads(response["body"])


def assert_refused(event: Any, status: int, code: str) -> None:
    answer, headers, body = invoke(event)
    assert (answer, body["error"]["code"]) == (status, code)
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name
    assert "Traceback" not in json.dumps(body)


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(event: dict[str, Any]) -> None:
        target = event
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda event: event.pop(key)


MALFORMED: dict[str, Callable[[dict[str, Any]], None]] = {
    "header value a number": _set(("headers", "Accept"), 5),
    "multi-value header a string": _set(("multiValueHeaders", "Accept"), "*/*"),
    "query value null": _set(("queryStringParameters", "q"), None),
    "body a number": _set(("body",), 7),
    "method null": _set(("httpMethod",), None),
    "path null": _set(("path",), None),
    "no path": _drop("path"),
    "no request context": _drop("requestContext"),
    "identity null": _set(("requestContext", "identity"), None),
}


@pytest.mark.parametrize("mutation", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("path", ["/recalls", "/admin/users", "/auth/login"])
def test_a_malformed_event_is_a_400_with_the_security_headers(world, path, mutation):
    # Given a well-formed event with one field of the wrong type or missing
    event = rest_event(
        "POST" if path == "/auth/login" else "GET",
        path,
        headers={"Accept": "*/*", "Content-Type": "application/json"},
        query="q=crib",
        body=SIGN_IN_BODY if path == "/auth/login" else None,
        source_ip="192.0.2.10",
    )
    mutation(event)
    # Then the edge refuses it as malformed, with the headers every answer carries
    assert_refused(event, 400, "bad_request")


def test_an_http_api_v2_event_is_a_400(world):
    # Given the payload of an HTTP API (format 2.0), which has no `path`
    event = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/recalls",
        "rawQueryString": "",
        "headers": {"accept": "*/*"},
        "requestContext": {
            "http": {"method": "GET", "path": "/recalls", "sourceIp": "198.51.100.1"},
            "requestId": str(uuid.uuid4()),
        },
        "isBase64Encoded": False,
    }
    assert_refused(event, 400, "bad_request")


def test_an_event_that_is_not_an_object_is_a_400(world):
    assert_refused(["GET", "/recalls"], 400, "bad_request")


def test_the_sparse_events_api_gateway_sends_are_still_served(world):
    # Given a request with no headers, no query and no body (every map null)
    event = rest_event("GET", "/recalls")
    event["headers"] = event["multiValueHeaders"] = None
    event["queryStringParameters"] = event["multiValueQueryStringParameters"] = None
    status, headers, body = invoke(event)
    assert status == 200
    assert body["items"] == []
    assert headers["Strict-Transport-Security"] == SECURITY_HEADERS["Strict-Transport-Security"]


def test_a_query_value_only_the_single_value_map_holds_is_inspected(world):
    # Given an event whose multi-value map is harmless and whose single-value map,
    # which Powertools merges into the route's parameters, carries an attack
    event = rest_event("GET", "/recalls", query="limit=5")
    event["queryStringParameters"] = {"limit": "5", "q": ATTACK}
    # Then inspection sees it: a 400, not a search for it
    assert_refused(event, 400, "rejected_input")


def test_a_query_value_that_differs_between_the_maps_is_inspected(world):
    event = rest_event("GET", "/recalls", query="q=crib")
    event["queryStringParameters"] = {"q": ATTACK}
    assert_refused(event, 400, "rejected_input")


def test_a_header_only_the_single_value_map_holds_is_held_to_the_size_limit(world):
    # Given a token far over the per-header limit, only in the single-value map,
    # which the identity layer reads for a name the multi-value map lacks
    event = rest_event("GET", "/auth/me", headers={"Accept": "*/*"})
    event["headers"]["Authorization"] = "Bearer " + "a" * 20_000
    # Then the limit applies before anything parses it
    assert_refused(event, 431, "headers_too_large")


def test_both_maps_of_a_normal_request_count_once_against_the_total(world):
    # Given headers that together use most of the total budget, in both maps as
    # API Gateway sends them
    headers = {f"X-Filler-{i}": "f" * 6_000 for i in range(2)}
    status, _, _ = invoke(rest_event("GET", "/recalls", headers=headers))
    # Then they are served: each map is held to the total on its own
    assert status == 200
