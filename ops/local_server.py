"""A local HTTP front for the API Lambda: one HTTP request, one proxy event, in-process.

It plays API Gateway's part: `sourceIp` is the socket peer (never a header),
bodies over API Gateway's 10 MB payload limit are refused before they are read,
and the Lambda's proxy response is written back as it is. A handler that raises
or answers something that is not a proxy response gets a 502 in the shape of the
API's gateway responses (cdk/api.py), as API Gateway answers a failed invocation.
Every answer this server makes itself (that 502, a 411, a 413, a malformed request)
is API Gateway's own in AWS, so it carries what a gateway response carries:
`x-amzn-ErrorType` and the security headers but the CSP, which its static header
mappings cannot hold. The local audit then judges what AWS sends.

The framing is read strictly: one Content-Length of digits only, no
Transfer-Encoding. A body this server did not read would otherwise be parsed as
the next request on the connection (request smuggling).

A handler with a `handle_as_sent` method (the local edge, which plays WAF) is also
given the query string as sent, which WAF measures and the proxy event does not
hold; the handler behind it gets the event alone, as the Lambda does in AWS.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, runtime_checkable

from functions.api.middleware.security_headers import GATEWAY_RESPONSE_HEADERS
from ops.apigw import LocalLambdaContext, rest_event
from ops.local_edge import GATEWAY_ERROR_TYPE_HEADER

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@runtime_checkable
class SeesTheRequestAsSent(Protocol):
    """A handler that reads the request as the client sent it besides its proxy event:
    the local edge, as WAF inspects the HTTP request before API Gateway builds the
    event (ops/local_edge.py)."""

    def handle_as_sent(
        self, event: dict[str, Any], context: Any, *, query_string: str
    ) -> dict[str, Any]: ...


# API Gateway refuses larger payloads before the Lambda is invoked.
API_GATEWAY_MAX_PAYLOAD = 10 * 1024 * 1024


FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})

# A connection that sends or reads nothing for this long is closed, so a client
# that stops halfway (slowloris) does not hold a thread for ever.
IDLE_TIMEOUT_SECONDS = 30.0


# The API's own codes where it has one for the same refusal (functions/shared/errors.py),
# so a client sees one code whichever layer refused; else the status phrase, snake_case.
_API_ERROR_CODES = {HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE: "headers_too_large"}


def _gateway_error_type(status: HTTPStatus) -> str:
    """The x-amzn-ErrorType API Gateway names: a failed invocation's 502 is an
    InternalServerErrorException; this server's other refusals are of the request."""
    return "InternalServerErrorException" if status >= 500 else "BadRequestException"


def _error_code(status: HTTPStatus) -> str:
    return _API_ERROR_CODES.get(status) or re.sub(r"[^a-z]+", "_", status.phrase.lower()).strip("_")


class MalformedProxyResponse(ValueError):
    """The handler's answer is not a REST proxy response API Gateway would accept."""


def proxy_answer(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body of a proxy response, checked before any byte is sent."""
    if not isinstance(response, dict):
        raise MalformedProxyResponse("not an object")
    status = response.get("statusCode")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise MalformedProxyResponse("statusCode")
    raw = response.get("body")
    if raw is None:
        raw = ""
    if not isinstance(raw, str):
        raise MalformedProxyResponse("body")
    if response.get("isBase64Encoded"):
        try:
            payload = base64.b64decode(raw, validate=True)
        except binascii.Error:
            raise MalformedProxyResponse("body is not base64") from None
    else:
        payload = raw.encode()
    # The framing is this server's, as it is API Gateway's: a handler's own
    # Content-Length or Transfer-Encoding would be sent twice, and strict
    # clients refuse a response with two (a request-smuggling shape).
    headers: list[tuple[str, str]] = []
    sent: set[str] = set(FRAMING_HEADERS)
    multi = response.get("multiValueHeaders") or {}
    single = response.get("headers") or {}
    if not isinstance(multi, dict) or not isinstance(single, dict):
        raise MalformedProxyResponse("headers")
    for name, values in multi.items():
        if not isinstance(values, list):
            raise MalformedProxyResponse("multiValueHeaders")
        if name.lower() not in FRAMING_HEADERS:
            headers.extend((name, str(value)) for value in values)
            sent.add(name.lower())
    for name, value in single.items():
        if name.lower() not in sent:
            headers.append((name, str(value)))
    # A line break in a name or value would let a response write its own headers.
    if any(ch in text for pair in headers for text in pair for ch in "\r\n\0"):
        raise MalformedProxyResponse("a header holds a line break")
    return status, headers, payload


def content_length(values: list[str]) -> int | None:
    """The body length of a request, None when its Content-Length is malformed.

    RFC 9110 allows digits only; int() would also take "+5", " 5" or "1_0", which a
    proxy in front could read otherwise. Repeated headers must agree.
    """
    if not values:
        return 0
    # Whitespace around a field value is not part of it (RFC 9110, 5.5).
    distinct = {value.strip(" \t") for value in values}
    if len(distinct) != 1:
        return None
    (value,) = distinct
    if not (value.isascii() and value.isdigit()):
        return None
    # int() refuses past 4300 digits; anything past 18 is over every limit anyway.
    if len(value.lstrip("0")) > 18:
        return API_GATEWAY_MAX_PAYLOAD + 1
    return int(value)


class _RequestHandler(BaseHTTPRequestHandler):
    server: LocalApiServer
    raw_requestline: bytes
    protocol_version = "HTTP/1.1"
    # Before the version is read, a refusal still gets a status line and headers
    # (http.server's default, HTTP/0.9, would send the body alone).
    default_request_version = "HTTP/1.0"
    # Headers and body leave in separate writes; with Nagle's algorithm on, each
    # keep-alive response waits ~40 ms for the client's delayed acknowledgement.
    disable_nagle_algorithm = True

    # No `Server: BaseHTTP/… Python/…` banner: it would tell attackers what runs here.
    def send_response(self, code: int, message: str | None = None) -> None:
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.idle_timeout)

    def handle(self) -> None:
        try:
            super().handle()
        except ConnectionError as exc:
            # A client that closes or resets mid-exchange is routine (a cancelled curl,
            # a browser navigating away): one line, not socketserver's traceback.
            self.close_connection = True
            self.log_message("%s client went away (%s)", self._request_text(), type(exc).__name__)

    def handle_one_request(self) -> None:
        # On a kept-alive connection, a hang-up before the next request line is not
        # the previous request's.
        self.command = self.path = ""
        super().handle_one_request()

    def _request_text(self) -> str:
        # The method and path only: a client that put a key or token in the query
        # string must not find it in the console (AWS's access log has no query either).
        # Empty or unset until a request line is read and accepted.
        path = getattr(self, "path", None)
        shown = path.partition("?")[0] if isinstance(path, str) and path else "-"
        return f'"{getattr(self, "command", None) or "-"} {shown}"'

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.log_message("%s %s %s", self._request_text(), code, size)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.quiet:
            return
        super().log_message(format, *args)

    def _answer_directly(
        self,
        status: HTTPStatus,
        code: str,
        message: str,
        correlation_id: str | None = None,
    ) -> None:
        error = {"code": code, "message": message}
        if correlation_id:
            error["correlation_id"] = correlation_id
        body = json.dumps({"error": error}).encode()
        self.send_response(status)
        # A gateway response's headers (cdk/api.py), not the function's: see the module doc.
        self.send_header(GATEWAY_ERROR_TYPE_HEADER, _gateway_error_type(status))
        for name, value in GATEWAY_RESPONSE_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        # A HEAD answer carries no body: its bytes would start the client's next response.
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a method it has no handler for, such as TRACE; a
        malformed request line; an over-long URI or header) in the API's JSON shape
        with the security headers, instead of its HTML page."""
        status = HTTPStatus(code)
        self._answer_directly(status, _error_code(status), f"{status.phrase}.")

    def parse_request(self) -> bool:
        # An HTTP/0.9 request line (no version) expects a bare body back: no status,
        # no security headers. API Gateway does not speak it either.
        if len(self.raw_requestline.split()) == 2:
            self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
            self.request_version = self.default_request_version
            self.command = ""  # not the previous request's, on a kept-alive connection
            self.close_connection = True
            self.send_error(HTTPStatus.BAD_REQUEST)
            return False
        return super().parse_request()

    def _handle(self) -> None:
        if self.headers.get("Transfer-Encoding") is not None:
            # Only Content-Length framing is read; the chunks would become the next request.
            self._answer_directly(
                HTTPStatus.LENGTH_REQUIRED, "length_required", "A Content-Length is required."
            )
            return
        length = content_length(self.headers.get_all("Content-Length") or [])
        if length is None:
            self._answer_directly(HTTPStatus.BAD_REQUEST, "bad_request", "Invalid Content-Length.")
            return
        if length > API_GATEWAY_MAX_PAYLOAD:
            self._answer_directly(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "payload_too_large", "Request too large."
            )
            return
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            # The client closed its side before the body was whole: API Gateway never
            # invokes an integration with part of a body, so neither does this.
            self.close_connection = True
            self.log_message("%s client went away (body cut short)", self._request_text())
            return
        path, _, query = self.path.partition("?")
        event = rest_event(
            self.command,
            path,
            headers=list(self.headers.items()),
            query=query,
            body=body,
            source_ip=self.client_address[0],
        )
        try:
            status, headers, payload = proxy_answer(self.server.invoke(event, query_string=query))
        except Exception as exc:  # noqa: BLE001 - any failure is the client's 502, as in AWS
            # The type only: an exception's text may quote a connection string.
            self.log_error("the handler failed: %s", type(exc).__name__)
            self._answer_directly(
                HTTPStatus.BAD_GATEWAY,
                "gateway_error",
                "Internal server error",
                event["requestContext"]["requestId"],
            )
            return
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    # http.server dispatches on these names.
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _handle  # noqa: N815


class LocalApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: Handler,
        *,
        quiet: bool = False,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
    ):
        super().__init__(address, _RequestHandler)
        self._handler = handler
        self.quiet = quiet
        self.idle_timeout = idle_timeout
        # The Lambda runtime serves one event at a time per instance; so does this.
        self._lock = threading.Lock()

    def set_handler(self, handler: Handler) -> None:
        """Swap the handler (the local stack binds the port first, wires the API later)."""
        with self._lock:
            self._handler = handler

    def invoke(self, event: dict[str, Any], *, query_string: str = "") -> dict[str, Any]:
        """Run the handler on one event; `query_string` is the request's as sent, for a
        handler that reads it (SeesTheRequestAsSent)."""
        with self._lock:
            if isinstance(self._handler, SeesTheRequestAsSent):
                return self._handler.handle_as_sent(
                    event, LocalLambdaContext(), query_string=query_string
                )
            return self._handler(event, LocalLambdaContext())

    @contextmanager
    def serving_alone(self) -> Iterator[None]:
        """No request is served meanwhile: for function code run in this process
        beside the API (the local stack's expiry sweep), which shares the API's
        logger and metrics as two Lambdas in AWS never do."""
        with self._lock:
            yield

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://{host}:{port}"


def api_handler() -> Handler:
    from functions.api.handler import lambda_handler

    return lambda_handler
