"""Request limits: body size, header size, body encoding and content type.

These run before anything parses the request, so an oversized or malformed
request costs almost nothing and never reaches a route.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import TYPE_CHECKING

from functions.shared.errors import (
    BadRequest,
    HeadersTooLarge,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from functions.shared.settings import Settings

if TYPE_CHECKING:
    # For annotations only: the helpers here import without Powertools' event
    # classes, so the benchmarks' FastAPI peer runs the same checks.
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON_MEDIA_TYPES = frozenset({"application/json"})


def raw_body(event: APIGatewayProxyEvent) -> bytes:
    """The body as bytes, base64-decoded when API Gateway encoded it."""
    body = event.body
    if not body:
        return b""
    if event.is_base64_encoded:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadRequest("The request body is not valid base64.") from exc
    return body.encode("utf-8", errors="surrogatepass")


def check_header_sizes(event: APIGatewayProxyEvent, settings: Settings) -> None:
    # The raw dicts, not the data class's properties: `multi_value_headers` builds a
    # case-insensitive copy on every access, which sizes do not need.
    multi: dict[str, list[str] | None] = event.get("multiValueHeaders") or {}
    single: dict[str, str | None] = event.get("headers") or {}
    # Each map on its own: API Gateway fills both with the same headers, but a reader
    # falls back to the single-value map for a name the other lacks.
    _check_sizes(((n, v) for n, values in multi.items() for v in values or ()), settings)
    _check_sizes(single.items(), settings)


def _utf8_size(text: str) -> int:
    # The limits are in bytes: a non-ASCII character is up to four of them.
    return len(text) if text.isascii() else len(text.encode("utf-8", errors="surrogatepass"))


def _check_sizes(pairs: Iterable[tuple[str, str | None]], settings: Settings) -> None:
    limit, total = settings.max_header_bytes, 0
    for name, value in pairs:
        size = _utf8_size(name) + _utf8_size(value or "")
        if size > limit:
            raise HeadersTooLarge()
        total += size
    if total > settings.max_total_header_bytes:
        raise HeadersTooLarge()


def accepted_media_types(body: bytes) -> frozenset[str]:
    """JSON; and for an empty body also no Content-Type at all. A body route's parser
    reads the media type even when no body came, and a foreign one (a form type,
    `multipart/form-data` without its boundary) raised there, a 500."""
    return JSON_MEDIA_TYPES if body else JSON_MEDIA_TYPES | {""}


def media_type(event: APIGatewayProxyEvent) -> str:
    value = event.headers.get("content-type") or event.headers.get("Content-Type") or ""
    return value.split(";", 1)[0].strip().lower()


def check_request_limits(event: APIGatewayProxyEvent, settings: Settings) -> None:
    check_header_sizes(event, settings)
    text = body_text(event, settings)
    # A route that takes a body reads its media type even when none came (to say it is
    # missing); a GET without a body costs nothing here.
    if text is not None or event.http_method.upper() not in BODYLESS_METHODS:
        canonicalize_content_type(event)


def canonicalize_content_type(event: APIGatewayProxyEvent) -> None:
    """Write the Content-Type checked here back into the event, its media type lower-cased.

    Media types are case-insensitive (RFC 9110, 8.3.1), and body_text() accepts
    `APPLICATION/JSON`; Powertools' validation, which parses the body later, compares
    the header as sent and raised on it, a 500. Every Content-Type header of the event
    becomes the one checked, so what parses the body sees what was checked.
    """
    value = event.headers.get("content-type")
    if value is None:
        return
    kind, separator, parameters = value.partition(";")
    canonical = kind.strip().lower() + separator + parameters
    for field, fill in (("headers", canonical), ("multiValueHeaders", [canonical])):
        headers = event.raw_event.get(field) or {}
        for name in [n for n in headers if n.lower() == "content-type"]:
            headers[name] = fill


def body_text(event: APIGatewayProxyEvent, settings: Settings) -> str | None:
    """Enforce size, encoding and media type; return the body as text (or None)."""
    body = raw_body(event)
    if len(body) > settings.max_body_bytes:
        raise PayloadTooLarge()
    if event.http_method.upper() in BODY_METHODS and media_type(event) not in accepted_media_types(
        body
    ):
        raise UnsupportedMediaType()
    if not body:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("The request body is not valid UTF-8.") from exc
