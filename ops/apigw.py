"""Build API Gateway REST proxy events and a Lambda context, as the service would.

Used by the local runner (each HTTP request becomes one event), by the tests and
by the benchmarks, so all three exercise the handler through the same shape.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl


@dataclass
class LocalLambdaContext:
    """The attributes Powertools reads from a Lambda context."""

    function_name: str = "babyshield-api"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/babyshield-api"
    log_stream_name: str = "local"
    timeout_seconds: float = 29.0
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        elapsed = time.monotonic() - self.started
        return max(0, int((self.timeout_seconds - elapsed) * 1000))


def rest_event(
    method: str,
    path: str,
    *,
    headers: Iterable[tuple[str, str]] | Mapping[str, str] = (),
    query: str = "",
    body: bytes | str | None = None,
    source_ip: str = "127.0.0.1",
    stage: str = "local",
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event for one HTTP request.

    `sourceIp` comes from the caller of this function (the socket peer in the
    local runner), never from a header: that is how API Gateway fills it too.
    A body that is not valid UTF-8 is sent base64-encoded, as API Gateway does
    for binary payloads.
    """
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    multi_headers: dict[str, list[str]] = {}
    for name, value in pairs:
        multi_headers.setdefault(name, []).append(value)
    single_headers = {name: values[-1] for name, values in multi_headers.items()}

    multi_query: dict[str, list[str]] = {}
    # API Gateway decodes names and values (`+` is a space) and splits the REST
    # query string at a plain `;` as at `&` (its "important notes" for REST APIs);
    # an encoded one, %3B, stays in the value.
    for name, value in parse_qsl(query.replace(";", "&"), keep_blank_values=True):
        multi_query.setdefault(name, []).append(value)
    single_query = {name: values[-1] for name, values in multi_query.items()}

    encoded = False
    body_text: str | None
    if body is None or body in (b"", ""):
        body_text = None
    elif isinstance(body, str):
        body_text = body
    else:
        try:
            body_text = body.decode("utf-8")
        except UnicodeDecodeError:
            body_text = base64.b64encode(body).decode("ascii")
            encoded = True

    request_id = str(uuid.uuid4())
    return {
        "resource": path,
        "path": path,
        "httpMethod": method.upper(),
        "headers": single_headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": single_query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "httpMethod": method.upper(),
            "path": f"/{stage}{path}",
            "protocol": "HTTP/1.1",
            "requestId": request_id,
            "requestTimeEpoch": int(time.time() * 1000),
            "resourcePath": path,
            "stage": stage,
            "identity": {
                "sourceIp": source_ip,
                "userAgent": single_headers.get("User-Agent") or single_headers.get("user-agent"),
            },
        },
        "body": body_text,
        "isBase64Encoded": encoded,
    }


def response_headers(response: Mapping[str, Any]) -> dict[str, str]:
    """Flatten a proxy response's headers (last value wins), for callers and tests."""
    merged: dict[str, str] = {}
    for name, value in (response.get("headers") or {}).items():
        merged[name] = str(value)
    for name, values in (response.get("multiValueHeaders") or {}).items():
        if values:
            merged[name] = str(values[-1])
    return merged
