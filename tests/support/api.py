"""Call the API Lambda in-process, the way API Gateway would."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ops.apigw import LocalLambdaContext, response_headers, rest_event


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None


def call_api(
    method: str,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    query: str = "",
    body: bytes | str | None = None,
    json_body: Any = None,
    source_ip: str = "198.51.100.10",
    context: LocalLambdaContext | None = None,
) -> ApiResponse:
    """One request through the API handler; `context` sets the function's time left."""
    from functions.api.handler import lambda_handler

    all_headers = dict(headers or {})
    if json_body is not None:
        body = json.dumps(json_body)
        all_headers.setdefault("Content-Type", "application/json")
    event = rest_event(
        method, path, headers=all_headers, query=query, body=body, source_ip=source_ip
    )
    response = lambda_handler(event, context or LocalLambdaContext())
    return ApiResponse(
        status=int(response["statusCode"]),
        headers=response_headers(response),
        body=response.get("body") or "",
    )


def sign_in(email: str, password: str, source_ip: str = "198.51.100.20") -> ApiResponse:
    """POST /auth/login with a JSON body, from `source_ip`."""
    return call_api(
        "POST",
        "/auth/login",
        json_body={"email": email, "password": password},
        source_ip=source_ip,
    )
