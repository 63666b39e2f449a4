"""Attack inspection: SQL injection, XSS and path traversal in path, query and JSON body.

The detector lives in `functions.api.inspection`; this module only decides what
parts of a request it looks at. The refusal is a generic 400 that never echoes
the input or names the rule that matched (that goes to the log, as a category).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from functions.api.inspection import find_threat, find_threat_in_path
from functions.shared.errors import BadRequest, RejectedInput
from functions.shared.observability import logger

# Deeper JSON than this is refused: no legitimate API body nests so far, and
# deep nesting is a cheap way to exhaust the parser's stack.
MAX_JSON_DEPTH = 32


def parse_json_body(text: str) -> Any:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BadRequest("The request body is not valid JSON.") from exc
    return document


def json_strings(document: Any) -> Iterator[str]:
    """Every key and string value in a JSON document, depth-limited, without recursion."""
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise BadRequest("The request body is nested too deeply.")
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            for key, value in node.items():
                yield key
                stack.append((value, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)


def query_values(event: APIGatewayProxyEvent) -> Iterator[str]:
    multi = event.multi_value_query_string_parameters or {}
    if multi:
        for name, values in multi.items():
            yield name
            yield from (v for v in values or () if v)
    else:
        for name, value in (event.query_string_parameters or {}).items():
            yield name
            if value:
                yield value


def inspect_request(event: APIGatewayProxyEvent, body_text: str | None) -> Any:
    """Refuse the request if any inspected part looks like an attack.

    Returns the parsed JSON body (or None) so nothing has to parse it twice.
    """
    threat = find_threat_in_path(unquote(event.path))
    if threat is None:
        for value in query_values(event):
            threat = find_threat(value)
            if threat is not None:
                break
    document = None
    if threat is None and body_text is not None:
        document = parse_json_body(body_text)
        for value in json_strings(document):
            threat = find_threat(value)
            if threat is not None:
                break
    if threat is not None:
        logger.warning(
            "request rejected by attack inspection",
            extra={"audit": True, "event": "input_rejected", "category": str(threat)},
        )
        raise RejectedInput()
    return document
