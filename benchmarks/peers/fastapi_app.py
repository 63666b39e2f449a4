"""The peer: the same API edge written with FastAPI behind Mangum.

This is what most teams would pick for a Python API on Lambda. It implements
the same behaviour as our handler for the benchmarked routes (security headers
on every response, body size limit, attack inspection of path/query/body with
the same detector, the admin allowlist from the connection's address) so that
the benchmarks compare frameworks, not features. A dev dependency only.
"""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from mangum import Mangum

from functions.api.inspection import find_threat, find_threat_in_path
from functions.api.middleware.security_headers import SECURITY_HEADERS

MAX_BODY_BYTES = int(os.environ.get("MAX_BODY_BYTES", str(10 * 1024 * 1024)))
ADMIN_NETWORKS = [
    ipaddress.ip_network(c.strip())
    for c in os.environ.get("ADMIN_ALLOWED_CIDRS", "").split(",")
    if c.strip()
]

app = FastAPI(title="BabyShield peer", docs_url=None, redoc_url=None, openapi_url=None)


def _error(status: int, code: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code}}, status_code=status)


def _strings(node: Any) -> list[str]:
    out: list[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            out.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return out


@app.middleware("http")
async def security_edge(request: Request, call_next: Any) -> Response:
    response = await _guarded(request, call_next)
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


async def _guarded(request: Request, call_next: Any) -> Response:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return _error(413, "payload_too_large")
    path = request.url.path
    if path == "/admin" or path.startswith(("/admin/", "/monitoring")):
        event = request.scope.get("aws.event", {})
        source = event.get("requestContext", {}).get("identity", {}).get("sourceIp", "")
        try:
            address = ipaddress.ip_address(source)
        except ValueError:
            return _error(403, "forbidden")
        if not any(address in net for net in ADMIN_NETWORKS):
            return _error(403, "forbidden")
    values = list(request.query_params.values()) + list(request.query_params.keys())
    if find_threat_in_path(unquote(path)) or any(find_threat(v) for v in values):
        return _error(400, "rejected_input")
    if body:
        try:
            document = json.loads(body)
        except ValueError:
            return _error(400, "bad_request")
        if any(find_threat(v) for v in _strings(document)):
            return _error(400, "rejected_input")
    response: Response = await call_next(request)
    return response


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


handler = Mangum(app, lifespan="off")
