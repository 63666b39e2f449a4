"""The peer: the same API, every route, written with FastAPI behind Mangum.

This is what most teams would pick for a Python API on Lambda. It answers what
our handler answers (tests/integration/identity/test_peer_parity.py holds the
two to it): security headers on every response; then, in our edge's order,
header and body limits and the JSON media type, the admin allowlist from the
connection's address, the caller's identity under the same path policies
(API key with its rate limit, JWT, the admin chain, webhook signatures), and
attack inspection of path, query and JSON body; 422s that never echo input,
the same error mapping, and the same page to on-call for a delivery the feed
signed that any of these refused. The routes validate with the same models and
call the same framework-free logic.

The edge is written against Starlette's request, as a FastAPI team would
write it, from our framework-free parts (the detector, the allowlist and JSON
walkers, the policy table); identity runs our authentication code on the
Lambda event, imported when a request first needs it, as our handler does.
The handler carries our handler's logger and metrics decorators. Only the
framework differs, so the benchmarks compare framework cost, not features. A
dev dependency only; nothing in functions/ imports it.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any
from uuid import UUID

from aws_lambda_powertools.logging import correlation_paths
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from mangum import Mangum
from pydantic.warnings import UnsupportedFieldAttributeWarning
from starlette.exceptions import HTTPException

from functions.api.admin import blocks, keys, users
from functions.api.admin.blocks import BlockChange, BlockList, BlockRequest
from functions.api.admin.keys import (
    CreatedKey,
    KeyList,
    NewKeyRequest,
    RotatedKey,
    RotateRequest,
)
from functions.api.admin.pages import (
    DEFAULT_ADMIN_PAGE_SIZE,
    MAX_ADMIN_CURSOR_LENGTH,
    MAX_ADMIN_PAGE_SIZE,
)
from functions.api.admin.users import UserList
from functions.api.identity.sign_in import (
    LoginRequest,
    Me,
    TokenResponse,
    published_keys,
    sign_in,
    who_am_i,
)
from functions.api.middleware.admin_allowlist import address_allowed, is_admin_path
from functions.api.middleware.allowlist_source import current_allowlist
from functions.api.middleware.attack_inspection import inspect_parts, query_values
from functions.api.middleware.policies import Policy, policy_for
from functions.api.middleware.request_limits import BODY_METHODS, accepted_media_types
from functions.api.middleware.security_headers import SECURITY_HEADERS
from functions.api.models import Digits, IsoDate
from functions.api.recalls import logic
from functions.api.recalls.cursor import MAX_CURSOR_LENGTH
from functions.api.recalls.feed import (
    RecallEvent,
    WebhookAccepted,
    accept_recall,
    record_refused_delivery,
    record_refused_if_signed,
)
from functions.api.recalls.models import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    NewSubscription,
    Recall,
    RecallPage,
    Subscription,
    SubscriptionList,
)
from functions.shared.caller import Caller
from functions.shared.errors import (
    BadRequest,
    DomainError,
    Forbidden,
    HeadersTooLarge,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
    internal_error,
    to_http,
)
from functions.shared.observability import logger, metrics
from functions.shared.settings import get_settings

# FastAPI passes each body parameter's name to pydantic as an alias that pydantic
# then ignores, and says so on every first validation: noise, not a finding.
warnings.filterwarnings("ignore", category=UnsupportedFieldAttributeWarning)

app = FastAPI(title="BabyShield peer", docs_url=None, redoc_url=None, openapi_url=None)


def _event(request: Request) -> dict[str, Any]:
    event: dict[str, Any] = request.scope.get("aws.event", {})
    return event


def _source_ip(request: Request) -> str:
    return str(_event(request).get("requestContext", {}).get("identity", {}).get("sourceIp", ""))


def _request_id(request: Request) -> str | None:
    request_id = _event(request).get("requestContext", {}).get("requestId")
    return str(request_id) if request_id is not None else None


def _error(error: DomainError, request: Request) -> JSONResponse:
    http = to_http(error, _request_id(request))
    return JSONResponse(http.body, status_code=http.status, headers=http.headers)


@app.middleware("http")
async def security_edge(request: Request, call_next: Any) -> Response:
    try:
        response = await _guarded(request, call_next)
    except DomainError as error:
        _note_refused_delivery(request, error)
        response = _error(error, request)
    for name in ("server", "x-powered-by"):
        if name in response.headers:
            del response.headers[name]
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def _check_limits(request: Request, body: bytes) -> str | None:
    settings = get_settings()
    total = 0
    for name, value in request.headers.items():
        size = len(name) + len(value)
        if size > settings.max_header_bytes:
            raise HeadersTooLarge()
        total += size
    if total > settings.max_total_header_bytes:
        raise HeadersTooLarge()
    if len(body) > settings.max_body_bytes:
        raise PayloadTooLarge()
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if request.method in BODY_METHODS and media_type not in accepted_media_types(body):
        raise UnsupportedMediaType()
    if not body:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("The request body is not valid UTF-8.") from exc


def _note_refused_delivery(request: Request, refusal: DomainError) -> None:
    """A delivery the feed signed and the API refused is a recall not stored: on-call
    hears of it, as from our handler (functions/api/app.py)."""
    webhook = getattr(request.state, "webhook", None)
    if webhook is not None:
        record_refused_delivery(webhook, refusal)


def _note_refused_signed_delivery(request: Request, refusal: DomainError) -> None:
    """Refused by the limits, before identity ran: on a routed feed delivery (its path
    and method), our check of its signature decides, as in our handler."""
    path = request.url.path
    if policy_for(path, get_settings()) is not Policy.WEBHOOK:
        return
    if not _routed(path, request.method):
        return
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

    record_refused_if_signed(APIGatewayProxyEvent(_event(request)), refusal)


def _routed(path: str, method: str | None = None) -> bool:
    return any(
        isinstance(route, APIRoute)
        and route.path_regex.match(path)
        and (method is None or method in (route.methods or ()))
        for route in app.router.routes
    )


def _check_allowlist(request: Request, path: str) -> None:
    if not is_admin_path(path, get_settings().admin_path_prefixes):
        return
    if address_allowed(_source_ip(request), current_allowlist()):
        return
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

    from functions.api.middleware.admin_chain import record_allowlist_refusal

    record_allowlist_refusal(APIGatewayProxyEvent(_event(request)), routed=_routed(path))
    raise Forbidden()


def _identify(request: Request, path: str) -> None:
    request.state.caller = None
    request.state.webhook = None
    settings = get_settings()
    if policy_for(path, settings) is Policy.PUBLIC:
        return
    # No route for this method (404, or 405 with Allow): no credential is checked,
    # except under the admin prefixes, where every lock comes first (as in our handler).
    if not _routed(path, request.method) and not is_admin_path(path, settings.admin_path_prefixes):
        return
    # Our authentication code, on the Lambda event Mangum was given, loaded on the
    # first request that needs it (as in our handler, where tokens, keys and
    # webhook secrets load on first use).
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

    from functions.api.middleware.authentication import authenticate

    identity = authenticate(APIGatewayProxyEvent(_event(request)))
    request.state.caller = identity.caller
    request.state.webhook = identity.webhook


def _inspect(request: Request, body_text: str | None) -> None:
    # The path as API Gateway passed it (the detector does its own decoding), and the
    # query as its event holds it: the same parts, refusal and audit line as ours.
    event = _event(request)
    path = str(event.get("path") or request.url.path)
    inspect_parts(path, query_values(event), request.method, body_text)


async def _guarded(request: Request, call_next: Any) -> Response:
    # The same order as our edge (functions/api/app.py): cheapest refusals first,
    # the allowlist before anything looks at content, identity before inspection.
    path = request.url.path
    try:
        body_text = _check_limits(request, await request.body())
    except DomainError as refusal:
        _note_refused_signed_delivery(request, refusal)
        raise
    _check_allowlist(request, path)
    _identify(request, path)
    _inspect(request, body_text)
    response: Response = await call_next(request)
    return response


@app.exception_handler(DomainError)
async def domain_error(request: Request, error: DomainError) -> JSONResponse:
    _note_refused_delivery(request, error)
    return _error(error, request)


@app.exception_handler(RequestValidationError)
async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    # FastAPI's default handler echoes the input; ours never does, so neither does the peer.
    refusal = ValidationFailed.from_errors(error.errors())
    _note_refused_delivery(request, refusal)
    return _error(refusal, request)


@app.exception_handler(HTTPException)
async def routing_error(request: Request, error: HTTPException) -> JSONResponse:
    if error.status_code == 405:
        allowed = [m.strip() for m in (error.headers or {}).get("Allow", "").split(",") if m]
        # HEAD is answered wherever GET is (handler, below).
        return _error(
            MethodNotAllowed([*allowed, "HEAD"] if "GET" in allowed else allowed), request
        )
    return _error(NotFound(), request)


@app.exception_handler(Exception)
async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
    http = internal_error(_request_id(request))
    return JSONResponse(http.body, status_code=http.status)


def _caller(request: Request) -> Caller:
    caller = request.state.caller
    if not isinstance(caller, Caller):
        raise Unauthorized()
    return caller


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/recalls")
def search_recalls(
    q: Annotated[str | None, Query(max_length=200)] = None,
    brand: Annotated[str | None, Query(max_length=100)] = None,
    since: IsoDate | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE), Digits] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH)] = None,
) -> RecallPage:
    return logic.search_recalls(q=q, brand=brand, since=since, limit=limit, cursor=cursor)


@app.get("/recalls/{recall_id}")
def get_recall(recall_id: str) -> Recall:
    return logic.recall_by_id(recall_id)


@app.get("/me/subscriptions")
def list_subscriptions(request: Request) -> SubscriptionList:
    return logic.subscriptions_of(_caller(request))


@app.post("/me/subscriptions", status_code=201)
def create_subscription(request: Request, subscription: NewSubscription) -> Subscription:
    return logic.subscribe(_caller(request), subscription)


@app.delete("/me/subscriptions/{subscription_id}", status_code=204)
def delete_subscription(request: Request, subscription_id: str) -> Response:
    logic.unsubscribe(_caller(request), subscription_id)
    return Response(status_code=204)


@app.post("/auth/login")
def login(request: Request, credentials: LoginRequest) -> TokenResponse:
    return sign_in(credentials, _source_ip(request))


@app.get("/auth/me")
def me(request: Request) -> Me:
    return who_am_i(_caller(request))


@app.get("/.well-known/jwks.json")
def jwks() -> dict[str, Any]:
    return published_keys()


@app.post("/webhooks/recalls")
def receive_recall(request: Request, event: RecallEvent) -> WebhookAccepted:
    return accept_recall(request.state.webhook, event, _source_ip(request))


@app.post("/admin/api-keys", status_code=201)
def create_key(request: Request, body: NewKeyRequest) -> CreatedKey:
    return keys.create_key(_caller(request), body, _source_ip(request))


@app.get("/admin/api-keys")
def list_keys(
    request: Request,
    owner_id: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ADMIN_PAGE_SIZE), Digits] = DEFAULT_ADMIN_PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=MAX_ADMIN_CURSOR_LENGTH)] = None,
) -> KeyList:
    return keys.list_keys(_caller(request), owner_id, limit=limit, cursor=cursor)


@app.post("/admin/api-keys/{key_id}/rotate", status_code=201)
def rotate_key(request: Request, key_id: str, body: RotateRequest | None = None) -> RotatedKey:
    return keys.rotate_key(_caller(request), key_id, body, _source_ip(request))


@app.post("/admin/api-keys/{key_id}/revoke")
def revoke_key(request: Request, key_id: str) -> keys.RevokedKey:
    return keys.revoke_key(_caller(request), key_id, _source_ip(request))


@app.get("/admin/users")
def list_users(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_ADMIN_PAGE_SIZE), Digits] = DEFAULT_ADMIN_PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=MAX_ADMIN_CURSOR_LENGTH)] = None,
) -> UserList:
    return users.list_users(_caller(request), limit=limit, cursor=cursor)


@app.get("/admin/blocks")
def list_blocks(request: Request) -> BlockList:
    return blocks.list_blocks(_caller(request))


@app.post("/admin/blocks", status_code=201)
def add_blocks(request: Request, body: BlockRequest) -> BlockChange:
    return blocks.add_blocks(_caller(request), body, _source_ip(request))


@app.delete("/admin/blocks/{ip}", status_code=204)
def remove_block(request: Request, ip: str) -> Response:
    blocks.remove_block(_caller(request), ip, _source_ip(request))
    return Response(status_code=204)


@app.delete("/admin/blocks/{address}/{prefix}", status_code=204)
def remove_network_block(request: Request, address: str, prefix: str) -> Response:
    blocks.remove_block(_caller(request), f"{address}/{prefix}", _source_ip(request))
    return Response(status_code=204)


_mangum = Mangum(app, lifespan="off")


# The same observability decorators as functions/api/handler.py: every invocation
# of ours pays for them (the Lambda context on each log line, the metrics flush),
# so the peer does too.
@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False
)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """HEAD as the GET it stands for, without the body, as our API answers it
    (functions/api/resolver.py); FastAPI routes HEAD nowhere."""
    head = isinstance(event, dict) and event.get("httpMethod") == "HEAD"
    if head:
        event = {**event, "httpMethod": "GET"}
    response: dict[str, Any] = _mangum(event, context)
    if head:
        response["body"] = ""
        response["isBase64Encoded"] = False
    return response
