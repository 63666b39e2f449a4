"""Attack inspection: SQL injection, XSS and path traversal in path, query and JSON body.

The detector lives in `functions.api.inspection`; this module decides which
parts of a request it looks at: the path, every query parameter name and value,
and every key and string value of a JSON body. Headers are not inspected: they
carry user agents, cookies and tokens that are not search input, and a header
that matters is validated where it is used.

The refusal is a generic 400 that never echoes the input or names the rule that
matched; the log line has the category, the rule and the part of the request
(path, query, body) it was found in, never the value.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from functions.api.inspection import Detection, detect
from functions.shared.errors import BadRequest, RejectedInput
from functions.shared.observability import logger

if TYPE_CHECKING:
    # For annotations only: the helpers here import without Powertools' event
    # classes, so the benchmarks' FastAPI peer runs the same checks.
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

# Deeper JSON than this is refused: no legitimate API body nests so far, and
# deep nesting is a cheap way to exhaust the parser's stack.
MAX_JSON_DEPTH = 32
# More keys and strings than this are refused rather than inspected: inspecting
# a value costs microseconds, so a 10 MB body of tiny strings would cost seconds
# of Lambda time, and skipping the rest instead would let an attack through.
MAX_JSON_STRINGS = 10_000


def parse_json_body(text: str) -> Any:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BadRequest("The request body is not valid JSON.") from exc
    return document


def json_strings(document: Any) -> Iterator[str]:
    """Every key and string value in a JSON document, depth-limited, without recursion."""
    stack: list[tuple[Any, int]] = [(document, 0)]
    count = 0
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise BadRequest("The request body is nested too deeply.")
        if isinstance(node, str):
            count += 1
            if count > MAX_JSON_STRINGS:
                raise BadRequest("The request body has too many fields.")
            yield node
        elif isinstance(node, dict):
            for key, value in node.items():
                stack.append((key, depth + 1))
                stack.append((value, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)


# Values a route only hashes or compares, never stores, renders or puts in a query:
# a generated password may hold `'#`, `--` or `../`, and refusing it would lock its
# owner out for good. Only these top-level values are skipped; keys are inspected.
OPAQUE_BODY_FIELDS: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/auth/login"): frozenset({"password"}),
}


def body_strings(document: Any, method: str, path: str) -> Iterator[str]:
    """The strings of a JSON body that inspection looks at: json_strings() less the
    route's opaque values (OPAQUE_BODY_FIELDS)."""
    # As the resolver routes it: `/auth/login/` reaches the login route too.
    opaque = OPAQUE_BODY_FIELDS.get((method, path.rstrip("/") or "/"))
    if opaque and isinstance(document, dict):
        document = {
            key: None if key in opaque and isinstance(value, str) else value
            for key, value in document.items()
        }
    yield from json_strings(document)


def query_values(event: APIGatewayProxyEvent | Mapping[str, Any]) -> Iterator[str]:
    """Every query parameter name and value (all values of a repeated parameter).

    Both of the event's maps: Powertools fills a route's parameters from the two
    merged, so a name or value that only the single-value map holds is inspected too.
    """
    multi: dict[str, list[str] | None] = event.get("multiValueQueryStringParameters") or {}
    for name, values in multi.items():
        yield name
        yield from (v for v in values or () if v)
    single: dict[str, str | None] = event.get("queryStringParameters") or {}
    for name, value in single.items():
        # API Gateway puts the last of the multi values here: seen above already.
        if name not in multi:
            yield name
        if value and value not in (multi.get(name) or ()):
            yield value


def _first_detection(values: Iterator[str]) -> Detection | None:
    for value in values:
        detection = detect(value)
        if detection is not None:
            return detection
    return None


def inspect_request(event: APIGatewayProxyEvent, body_text: str | None) -> Any:
    """Refuse the request if any inspected part looks like an attack.

    Returns the parsed JSON body (or None) so nothing has to parse it twice.
    The path goes in as sent: the detector does its own decoding, up to three
    rounds, so `%252e%252e` is seen as `..`.
    """
    return inspect_parts(event.path or "", query_values(event), event.http_method, body_text)


def inspect_parts(path: str, query: Iterator[str], method: str, body_text: str | None) -> Any:
    """inspect_request on a request's parts: the path as sent, its query names and
    values (query_values), and its body. The benchmarks' FastAPI peer calls it too,
    so both refuse, and record, the same way."""
    part = "path"
    detection = detect(path)
    if detection is None:
        part = "query"
        detection = _first_detection(query)
    document = None
    if detection is None and body_text is not None:
        part = "body"
        document = parse_json_body(body_text)
        detection = _first_detection(body_strings(document, method, path))
    if detection is not None:
        logger.warning(
            "request rejected by attack inspection",
            extra={
                "audit": True,
                "event": "input_rejected",
                "category": str(detection.threat),
                "rule": detection.rule,
                # Not "location": Powertools uses that key for the source line.
                "part": part,
            },
        )
        raise RejectedInput()
    return document
