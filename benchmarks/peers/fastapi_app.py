"""The peer: the same API edge and routes written with FastAPI behind Mangum.

This is what most teams would pick for a Python API on Lambda. For the
benchmarked routes it behaves as our handler does: security headers on every
response, header and body size limits, attack inspection of path, query and
JSON body with the same detector, the admin allowlist from the connection's
address, 422s that never echo input, domain errors mapped by the same
`to_http`, and on `/recalls` an optional API key checked by the same identity
code (lookup in PostgreSQL, SHA-256 compare, per-key rate limit in DynamoDB,
audit line) before the same domain logic and data layer run the search.

Only the framework differs, so the benchmarks compare framework cost, not
features. A dev dependency only; nothing in functions/ imports it.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import date
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from mangum import Mangum

from benchmarks.peers.identity import check_key
from functions.api.inspection import find_threat, find_threat_in_path
from functions.api.middleware.security_headers import SECURITY_HEADERS
from functions.api.recalls import logic
from functions.api.recalls.cursor import MAX_CURSOR_LENGTH
from functions.api.recalls.models import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, RecallPage
from functions.shared.errors import DomainError, to_http
from functions.shared.settings import get_settings

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
    for name in ("server", "x-powered-by"):
        if name in response.headers:
            del response.headers[name]
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def _admin_allowed(request: Request) -> bool:
    event = request.scope.get("aws.event", {})
    source = event.get("requestContext", {}).get("identity", {}).get("sourceIp", "")
    try:
        address = ipaddress.ip_address(source)
    except ValueError:
        return False
    return any(
        address.version == net.version and address in net
        for net in get_settings().admin_allowed_cidrs
    )


async def _guarded(request: Request, call_next: Any) -> Response:
    settings = get_settings()
    total = 0
    for name, value in request.headers.items():
        size = len(name) + len(value)
        if size > settings.max_header_bytes:
            return _error(431, "headers_too_large")
        total += size
    if total > settings.max_total_header_bytes:
        return _error(431, "headers_too_large")
    body = await request.body()
    if len(body) > settings.max_body_bytes:
        return _error(413, "payload_too_large")
    path = request.url.path
    prefixes = settings.admin_path_prefixes
    if any(path == p or path.startswith(p + "/") for p in prefixes) and not _admin_allowed(request):
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


@app.exception_handler(DomainError)
async def domain_error(request: Request, error: DomainError) -> JSONResponse:
    http = to_http(error, None)
    return JSONResponse(http.body, status_code=http.status, headers=http.headers)


@app.exception_handler(RequestValidationError)
async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    # FastAPI's default handler echoes the input; ours never does, so neither does the peer.
    fields = sorted({".".join(str(p) for p in item.get("loc", ())) for item in error.errors()})
    return JSONResponse({"error": {"code": "validation_failed", "fields": fields}}, status_code=422)


def _source_ip(request: Request) -> str:
    event = request.scope.get("aws.event", {})
    return str(event.get("requestContext", {}).get("identity", {}).get("sourceIp", ""))


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/recalls", response_model=RecallPage)
def search_recalls(
    request: Request,
    q: Annotated[str | None, Query(max_length=200)] = None,
    brand: Annotated[str | None, Query(max_length=100)] = None,
    since: date | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH)] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> RecallPage:
    if x_api_key is not None:
        check_key(x_api_key, _source_ip(request))
    return logic.search_recalls(q=q, brand=brand, since=since, limit=limit, cursor=cursor)


handler = Mangum(app, lifespan="off")
