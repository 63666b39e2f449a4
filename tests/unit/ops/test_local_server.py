"""The local runner turns real HTTP into proxy events the way API Gateway does."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ops.local_server import LocalApiServer, api_handler
from tests.support.local_server import http_request, serve


@pytest.fixture
def server(monkeypatch) -> Iterator[LocalApiServer]:
    monkeypatch.setenv("ADMIN_ALLOWED_CIDRS", "192.0.2.0/24")
    srv = LocalApiServer(("127.0.0.1", 0), api_handler(), quiet=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def request(server, method, path, headers=None, body=None):
    host, port = server.server_address[:2]
    return http_request(host, port, method, path, body=body, headers=headers, timeout=10)


def test_health_over_http_has_security_headers_and_no_banner(server):
    status, headers, body = request(server, "GET", "/health")
    assert status == 200
    assert body == b'{"status":"ok"}'
    assert headers["Strict-Transport-Security"].startswith("max-age=63072000")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Server" not in headers


def test_forwarded_for_header_cannot_reach_admin(server):
    # Given the allowlist 192.0.2.0/24 and a caller on 127.0.0.1 claiming 192.0.2.7
    status, _, _ = request(server, "GET", "/admin/users", headers={"X-Forwarded-For": "192.0.2.7"})
    # Then the socket address decides: refused
    assert status == 403


def test_monitoring_prefix_is_protected_too(server):
    status, _, _ = request(server, "GET", "/monitoring/metrics")
    assert status == 403


def test_body_over_the_gateway_limit_is_refused_before_reading(server):
    # Given a declared body larger than API Gateway accepts
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.putrequest("POST", "/health")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(11 * 1024 * 1024))
    conn.endheaders()
    # When the server answers without waiting for the body
    response = conn.getresponse()
    # Then it is 413 with the security headers
    assert response.status == 413
    assert response.getheader("X-Frame-Options") == "DENY"
    conn.close()


def test_invalid_utf8_body_is_a_clear_400(server):
    status, headers, body = request(
        server,
        "POST",
        "/health",
        headers={"Content-Type": "application/json"},
        body=b'{"q": "\xff\xfe"}',
    )
    assert status == 400
    assert b"UTF-8" in body
    assert headers["Cache-Control"] == "no-store"


def test_malformed_content_length_is_a_clear_400(server):
    status, _, _ = request(server, "POST", "/health", headers={"Content-Length": "abc"})
    assert status == 400


def test_a_handlers_own_framing_headers_are_not_sent_twice():
    import socket

    # Given a handler whose response carries its own (wrong) framing headers, as
    # Mangum's responses do (content-length), in both header maps
    def handler(event, context):
        return {
            "statusCode": 200,
            "multiValueHeaders": {"content-length": ["999"], "Content-Type": ["text/plain"]},
            "headers": {"Transfer-Encoding": "chunked", "Connection": "close"},
            "body": "ok",
        }

    srv = LocalApiServer(("127.0.0.1", 0), handler, quiet=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        # When a client reads the raw response
        port = srv.server_address[1]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /x HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n")
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
    finally:
        srv.shutdown()
        srv.server_close()

    # Then there is one Content-Length, the server's, and no Transfer-Encoding
    head, _, body = raw.partition(b"\r\n\r\n")
    names = [line.split(b":", 1)[0].lower() for line in head.split(b"\r\n")[1:]]
    assert names.count(b"content-length") == 1
    assert b"content-length: 2" in head.lower()
    assert b"transfer-encoding" not in names
    assert body == b"ok"


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "BREW"])
def test_a_method_the_server_has_no_handler_for_gets_json_not_a_page(server, method):
    status, headers, body = request(server, method, "/health")
    assert status == 501
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert json.loads(body)["error"]["code"] == "not_implemented"
    assert b"<html" not in body.lower()


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        # http.server's own limits: a request line over 64 KiB, more than 100 headers
        ("/recalls?q=" + "a" * 70_000, {}, 414, "request_uri_too_long"),
        ("/health", {f"X-Many-{i}": "x" for i in range(120)}, 431, "headers_too_large"),
    ],
    ids=["uri", "headers"],
)
def test_the_servers_own_refusals_use_the_apis_code_spelling(server, path, headers, status, code):
    """Every API error code is snake_case, and one refusal has one code whichever layer
    makes it: 414 was `request-uri_too_long`, and too many headers
    `request_header_fields_too_large` where the API says `headers_too_large`."""
    answer_status, answer_headers, body = request(server, "GET", path, headers=headers)
    assert answer_status == status
    assert answer_headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["code"] == code


class EdgeStandIn:
    """A handler that reads the request as sent, as the local edge does."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, Any], str]] = []

    def __call__(self, event, context):
        raise AssertionError("a handler that reads the request as sent is called with it")

    def handle_as_sent(self, event, context, *, query_string):
        self.seen.append((event, query_string))
        return {"statusCode": 200, "headers": {}, "body": "ok"}


def test_the_edge_gets_the_query_string_as_sent_and_the_event_api_gateway_builds():
    """WAF measures the query string as the client sent it; API Gateway's event holds
    only its decoded parameters. The server hands both to the edge, and the event
    carries nothing API Gateway's would not."""
    from ops.apigw import rest_event

    edge = EdgeStandIn()
    sent = "ids=1,2,3&q=%41%2Cb&flag"
    for srv in serve(edge):
        status, _, _ = request(srv, "GET", f"/health?{sent}")
        assert status == 200

    ((event, query_string),) = edge.seen
    assert query_string == sent
    assert set(event) == set(rest_event("GET", "/health", query=sent))
    assert event["multiValueQueryStringParameters"] == {
        "ids": ["1,2,3"],
        "q": ["A,b"],
        "flag": [""],
    }


def test_a_plain_handler_gets_the_event_alone():
    """A handler without `handle_as_sent` (the API itself, in tests) is called as a
    Lambda is: event and context, the event as API Gateway builds it."""
    from ops.apigw import rest_event

    events: list[dict[str, Any]] = []

    def handler(event, context):
        events.append(event)
        return {"statusCode": 204, "headers": {}, "body": ""}

    for srv in serve(handler):
        assert request(srv, "GET", "/x?a=1,2")[0] == 204

    assert set(events[0]) == set(rest_event("GET", "/x", query="a=1,2"))
