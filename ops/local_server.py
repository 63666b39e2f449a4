"""A local HTTP front for the API Lambda: one HTTP request, one proxy event, in-process.

It plays API Gateway's part: `sourceIp` is the socket peer (never a header),
bodies over API Gateway's 10 MB payload limit are refused before they are read,
and the Lambda's proxy response is written back as it is.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from functions.api.middleware.security_headers import SECURITY_HEADERS
from ops.apigw import LocalLambdaContext, rest_event

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

# API Gateway refuses larger payloads before the Lambda is invoked.
API_GATEWAY_MAX_PAYLOAD = 10 * 1024 * 1024


FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


class _RequestHandler(BaseHTTPRequestHandler):
    server: LocalApiServer
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle's algorithm on, each
    # keep-alive response waits ~40 ms for the client's delayed acknowledgement.
    disable_nagle_algorithm = True

    # No `Server: BaseHTTP/… Python/…` banner: it would tell attackers what runs here.
    def send_response(self, code: int, message: str | None = None) -> None:
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.quiet:
            return
        super().log_message(format, *args)

    def _answer_directly(self, status: HTTPStatus, code: str, message: str) -> None:
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        self.send_response(status)
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a method it has no handler for, such as TRACE; a
        malformed request line; an over-long URI or header) in the API's JSON shape
        with the security headers, instead of its HTML page."""
        status = HTTPStatus(code)
        self._answer_directly(status, status.phrase.lower().replace(" ", "_"), f"{status.phrase}.")

    def _handle(self) -> None:
        length_header = self.headers.get("Content-Length", "0") or "0"
        try:
            length = int(length_header)
        except ValueError:
            self._answer_directly(HTTPStatus.BAD_REQUEST, "bad_request", "Invalid Content-Length.")
            return
        if length < 0:
            self._answer_directly(HTTPStatus.BAD_REQUEST, "bad_request", "Invalid Content-Length.")
            return
        if length > API_GATEWAY_MAX_PAYLOAD:
            self._answer_directly(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "payload_too_large", "Request too large."
            )
            return
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        event = rest_event(
            self.command,
            path,
            headers=list(self.headers.items()),
            query=query,
            body=body,
            source_ip=self.client_address[0],
        )
        response = self.server.invoke(event)
        self._write(response)

    def _write(self, response: dict[str, Any]) -> None:
        raw = response.get("body") or ""
        payload = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()
        self.send_response(int(response.get("statusCode", 500)))
        # The framing is this server's, as it is API Gateway's: a handler's own
        # Content-Length or Transfer-Encoding would be sent twice, and strict
        # clients refuse a response with two (a request-smuggling shape).
        sent: set[str] = set(FRAMING_HEADERS)
        for name, values in (response.get("multiValueHeaders") or {}).items():
            if name.lower() in FRAMING_HEADERS:
                continue
            for value in values:
                self.send_header(name, str(value))
            sent.add(name.lower())
        for name, value in (response.get("headers") or {}).items():
            if name.lower() not in sent:
                self.send_header(name, str(value))
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    # http.server dispatches on these names.
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _handle  # noqa: N815


class LocalApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Handler, *, quiet: bool = False):
        super().__init__(address, _RequestHandler)
        self._handler = handler
        self.quiet = quiet
        # The Lambda runtime serves one event at a time per instance; so does this.
        self._lock = threading.Lock()

    def set_handler(self, handler: Handler) -> None:
        """Swap the handler (the local stack binds the port first, wires the API later)."""
        with self._lock:
            self._handler = handler

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._handler(event, LocalLambdaContext())

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://{host}:{port}"


def api_handler() -> Handler:
    from functions.api.handler import lambda_handler

    return lambda_handler
