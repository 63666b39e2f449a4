"""A client that hangs up before the local server has written its answer: one short
log line, no traceback, and the server goes on serving."""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from typing import Any

import pytest

from ops.local_server import LocalApiServer
from tests.support.local_server import serve

# Larger than the loopback socket buffers, so the write cannot finish after a hang-up.
LARGE_BODY = "x" * (16 * 1024 * 1024)


class SlowLargeAnswer:
    """Answers /large with a large body, once the test says the client is gone."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.answer = threading.Event()

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["path"] != "/large":
            return {"statusCode": 200, "body": "ok"}
        self.asked.set()
        self.answer.wait(10)
        return {"statusCode": 200, "body": LARGE_BODY}


@pytest.fixture
def handler() -> SlowLargeAnswer:
    return SlowLargeAnswer()


def _hang_up(srv: LocalApiServer, handler: SlowLargeAnswer, *, read_first: int) -> None:
    """Ask for /large, read `read_first` bytes of the answer, then reset the connection."""
    sock = socket.create_connection(("127.0.0.1", srv.server_address[1]), timeout=10)
    # SO_LINGER 0: close sends a reset, as a killed client or a dropped network does.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.sendall(b"GET /large?token=secret HTTP/1.1\r\nHost: local\r\n\r\n")
    assert handler.asked.wait(10)
    if read_first:
        handler.answer.set()
        received = 0
        while received < read_first:
            received += len(sock.recv(read_first - received))
    sock.close()
    handler.answer.set()


def _still_serves(srv: LocalApiServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10)
    try:
        conn.request("GET", "/small")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"ok")
    finally:
        conn.close()


@pytest.mark.parametrize("read_first", [0, 64 * 1024], ids=["before the answer", "mid-answer"])
def test_a_client_that_hangs_up_is_one_log_line_and_the_server_carries_on(
    handler: SlowLargeAnswer, read_first: int, capfd: pytest.CaptureFixture[str]
) -> None:
    for srv in serve(handler, quiet=False):
        _hang_up(srv, handler, read_first=read_first)
        _still_serves(srv)
    err = capfd.readouterr().err

    assert "Traceback" not in err
    assert "Exception occurred" not in err
    gone = [line for line in err.splitlines() if "client went away" in line]
    assert len(gone) == 1
    assert '"GET /large" client went away (' in gone[0]
    assert gone[0].split("client went away (")[1] in ("BrokenPipeError)", "ConnectionResetError)")
    # The query string stays out of this line too, as out of the access log
    assert "secret" not in err
    assert '"GET /small" 200' in err


def test_a_hang_up_between_kept_alive_requests_is_not_logged_as_the_previous_request(
    handler: SlowLargeAnswer, capfd: pytest.CaptureFixture[str]
) -> None:
    for srv in serve(handler, quiet=False):
        sock = socket.create_connection(("127.0.0.1", srv.server_address[1]), timeout=10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(b"GET /small HTTP/1.1\r\nHost: local\r\n\r\n")
        answer = b""
        while not answer.endswith(b"\r\n\r\nok"):
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        sock.close()
        _still_serves(srv)
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert '/small" client went away' not in err
    # Linux reports the reset to the read that waits for the next request line
    assert '"- -" client went away (ConnectionResetError)' in err


def test_a_quiet_server_logs_nothing_for_a_client_that_hangs_up(
    handler: SlowLargeAnswer, capfd: pytest.CaptureFixture[str]
) -> None:
    for srv in serve(handler, quiet=True):
        _hang_up(srv, handler, read_first=0)
        _still_serves(srv)
    assert capfd.readouterr().err == ""


def test_a_client_that_hangs_up_mid_body_is_not_handed_to_the_api():
    """`rfile.read(length)` returns what arrived when the client shuts its side down
    early; the handler was invoked with the body cut short and answered as if the
    request were whole. API Gateway never invokes an integration with part of a body."""
    bodies: list[Any] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        bodies.append(event.get("body"))
        return {"statusCode": 200, "body": "ok"}

    for srv in serve(handler):
        sock = socket.create_connection(("127.0.0.1", srv.server_address[1]), timeout=10)
        try:
            sock.sendall(
                b"POST /recalls HTTP/1.1\r\nHost: local\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n" + b'{"a":1}'
            )
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        finally:
            sock.close()
    # The request never arrived whole: nothing reached the handler
    assert bodies == [], answer[:80]
