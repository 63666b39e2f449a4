"""Malformed HTTP against the local server: a clear refusal with the security headers,
never a body read as the next request, a dropped connection or a held thread."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from functions.api.middleware.security_headers import SECURITY_HEADERS
from ops.local_server import LocalApiServer
from tests.support.local_server import serve


class Recorder:
    """A handler that answers 200 and remembers the path of every event it was given."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.paths.append(event["path"])
        self.events.append(event)
        return {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "ok"}


# A made-up connection string an exception might carry.
LEAKY_DSN = "postgresql://app:hunter2@db/babyshield"  # pragma: allowlist secret


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def server(recorder: Recorder) -> Iterator[LocalApiServer]:
    yield from serve(recorder)


def exchange(srv: LocalApiServer, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", srv.server_address[1]), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Every response on the connection, split by its Content-Length."""
    answers = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1."), f"no status line: {raw[:80]!r}"
        headers = dict(line.split(": ", 1) for line in lines[1:])
        length = int(headers["Content-Length"])
        answers.append((int(lines[0].split()[1]), headers, rest[:length]))
        raw = rest[length:]
    return answers


def assert_json_refusal(answer: tuple[int, dict[str, str], bytes], status: int) -> dict[str, Any]:
    code, headers, body = answer
    assert code == status
    # API Gateway makes this answer in AWS: its gateway response's headers, which are
    # every security header but the CSP (cdk/api.py), and its error type.
    assert headers.get("x-amzn-ErrorType"), headers
    assert "Content-Security-Policy" not in headers, headers
    for name, value in SECURITY_HEADERS.items():
        if name != "Content-Security-Policy":
            assert headers.get(name) == value, name
    assert headers["Content-Type"] == "application/json"
    parsed: dict[str, Any] = json.loads(body)
    return parsed


@pytest.mark.parametrize(
    "request_line",
    [b"GET /health\r\n\r\n", b"GET /health\r\n", b"GARBAGE\r\n\r\n", b"GET /x HTTP/1.1x\r\n\r\n"],
    ids=["http/0.9", "http/0.9 without headers", "one word", "bad version"],
)
def test_a_request_line_without_a_usable_version_gets_a_status_line_and_headers(
    server, recorder, request_line
):
    # http.server answers these as HTTP/0.9: the JSON body alone, no status or headers
    (answer,) = responses(exchange(server, request_line))
    assert assert_json_refusal(answer, 400)["error"]["code"] == "bad_request"
    assert recorder.paths == []


@pytest.mark.parametrize("value", ["1_0", "+10", "0x0a", "10, 10", "", "-1"])
def test_a_content_length_that_is_not_digits_is_refused(server, recorder, value):
    # int() reads "1_0" and "+10" as 10; a proxy in front would not
    request = (
        f"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: {value}\r\n"
        "Connection: close\r\n\r\n0123456789"
    ).encode()
    (answer,) = responses(exchange(server, request))
    assert assert_json_refusal(answer, 400)["error"]["message"] == "Invalid Content-Length."
    assert recorder.paths == []


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


def test_a_content_length_of_thousands_of_digits_is_too_large(server, recorder):
    # Digits only, so well-formed; int() would raise past 4300 of them
    request = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n"
    (answer,) = responses(exchange(server, request))
    assert assert_json_refusal(answer, 413)["error"]["code"] == "payload_too_large"
    assert recorder.paths == []


def test_two_different_content_lengths_are_refused_and_nothing_is_smuggled(server, recorder):
    # Given a body framed by the first Content-Length, the rest a request of its own
    request = (
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: "
        + str(3 + len(SMUGGLED)).encode()
        + b"\r\n\r\nabc"
        + SMUGGLED
    )
    # Then one 400 and the connection closes: the second request never runs
    (answer,) = responses(exchange(server, request))
    assert_json_refusal(answer, 400)
    assert recorder.paths == []


def test_a_chunked_body_is_refused_and_its_chunks_are_not_read_as_a_request(server, recorder):
    request = b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + SMUGGLED
    (answer,) = responses(exchange(server, request))
    assert assert_json_refusal(answer, 411)["error"]["code"] == "length_required"
    assert recorder.paths == []


def test_repeated_equal_content_lengths_and_whitespace_are_accepted(server, recorder):
    request = (
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3 \r\nContent-Length: 3\r\n"
        b"Connection: close\r\n\r\nabc"
    )
    ((status, _, body),) = responses(exchange(server, request))
    assert (status, body) == (200, b"ok")
    assert recorder.events[0]["body"] == "abc"


def test_keep_alive_serves_each_request_on_the_connection(server, recorder):
    request = (
        b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
        b"GET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    assert [status for status, _, _ in responses(exchange(server, request))] == [200, 200]
    assert recorder.paths == ["/a", "/b"]


def test_a_handler_that_raises_is_a_502_with_the_correlation_id_not_a_dropped_connection():
    seen: list[str] = []

    def failing(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append(event["requestContext"]["requestId"])
        raise RuntimeError(f"{LEAKY_DSN} is unreachable")

    for srv in serve(failing):
        raw = exchange(srv, b"GET /recalls HTTP/1.1\r\nHost: a\r\n\r\n")
    (answer,) = responses(raw)
    body = assert_json_refusal(answer, 502)
    # The shape of the API's DEFAULT_5XX gateway response, nothing of the exception
    assert body == {
        "error": {
            "code": "gateway_error",
            "message": "Internal server error",
            "correlation_id": seen[0],
        }
    }
    assert b"hunter2" not in raw


@pytest.mark.parametrize(
    "response",
    [
        {"statusCode": 200, "headers": {"X-Note": "a\r\nSet-Cookie: session=planted"}, "body": ""},
        {"statusCode": "200 OK", "body": ""},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "body": "not base64!", "isBase64Encoded": True},
        {"body": "no status"},
        None,
    ],
    ids=["header injection", "status text", "body object", "bad base64", "no status", "none"],
)
def test_a_malformed_proxy_response_is_a_502_and_nothing_of_it_is_sent(response):
    for srv in serve(lambda event, context: response):
        raw = exchange(srv, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    (answer,) = responses(raw)
    assert assert_json_refusal(answer, 502)["error"]["code"] == "gateway_error"
    assert b"planted" not in raw


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET /x HTTP/1.1\r\nHost: a\r\n", b"POST /x HTTP/1.1\r\nContent-Length: 9\r\n\r\nab"],
    ids=["nothing", "headers unfinished", "body unfinished"],
)
def test_a_client_that_stops_halfway_is_disconnected_after_the_idle_timeout(recorder, sent):
    for srv in serve(recorder, idle_timeout=0.3):
        with socket.create_connection(("127.0.0.1", srv.server_address[1]), timeout=10) as sock:
            sock.sendall(sent)
            started = time.monotonic()
            # The server closes its side instead of waiting for ever
            assert sock.recv(1024) == b""
            assert time.monotonic() - started < 5
    assert recorder.paths == []


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"HEAD /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
        (b"HEAD /x HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n", 413),
        (b"HEAD /x HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", 400),
    ],
    ids=["chunked", "too large", "bad length"],
)
def test_a_refused_head_request_gets_the_headers_and_no_body(
    server, recorder, request_head, status
):
    # A HEAD answer has no body (RFC 9110): bytes after its headers would be read by
    # the client as the start of its next response on the connection.
    raw = exchange(server, request_head)
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == str(status).encode()
    assert b"Content-Length: " in head
    assert rest == b""
    assert recorder.paths == []


def test_a_head_request_whose_handler_raises_gets_a_502_without_a_body():
    def failing(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    for srv in serve(failing):
        raw = exchange(srv, b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n")
        head, _, rest = raw.partition(b"\r\n\r\n")
        assert head.split(b" ", 2)[1] == b"502"
        assert rest == b""
