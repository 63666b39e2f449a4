"""The API: resolver, edge guards, routers and the one error mapping."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from functions.api.identity.caller import WEBHOOK_CONTEXT_KEY
from functions.api.middleware.admin_allowlist import enforce_admin_allowlist, is_admin_path
from functions.api.middleware.admin_chain import record_allowlist_refusal
from functions.api.middleware.attack_inspection import inspect_request
from functions.api.middleware.authentication import authenticate
from functions.api.middleware.policies import Policy, policy_for
from functions.api.middleware.request_limits import body_text, check_request_limits
from functions.api.recalls.feed import record_refused_delivery, record_refused_if_signed
from functions.api.resolver import SecureResolver
from functions.api.routes import (
    admin_blocks,
    admin_keys,
    admin_users,
    auth,
    health,
    jwks,
    recalls,
    subscriptions,
    webhooks,
)
from functions.shared.caller import CALLER_CONTEXT_KEY
from functions.shared.errors import (
    DomainError,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    UnsupportedMediaType,
    ValidationFailed,
    internal_error,
    to_http,
)
from functions.shared.observability import logger
from functions.shared.settings import get_settings

API_TITLE = "BabyShield API"
API_VERSION = "1.0.0"


def guard_request_limits(event: APIGatewayProxyEvent) -> None:
    try:
        check_request_limits(event, get_settings())
    except DomainError as refusal:
        _note_refused_signed_delivery(event, refusal)
        raise


def _note_refused_signed_delivery(event: APIGatewayProxyEvent, refusal: DomainError) -> None:
    """A feed delivery refused for its size, media type or encoding, before identity
    runs: if the feed signed it, it is a recall not stored, and on-call is told as for
    any other refused delivery. An unsigned one stays a plain refusal, and so does a
    request no route takes (another method: a 405 whatever it carried, whose
    credentials identity would not have checked either)."""
    if policy_for(event.path, get_settings()) is not Policy.WEBHOOK:
        return
    if not _routed(event):
        return
    record_refused_if_signed(event, refusal)


def guard_attack_inspection(event: APIGatewayProxyEvent) -> None:
    try:
        inspect_request(event, body_text(event, get_settings()))
    except DomainError as refusal:
        _note_refused_delivery(refusal)  # identity ran first
        raise


def _note_refused_delivery(refusal: DomainError) -> None:
    """A signed delivery refused, by a guard or at validation, is a recall not stored."""
    webhook = app.context.get(WEBHOOK_CONTEXT_KEY)
    if webhook is not None:
        record_refused_delivery(webhook, refusal)


def guard_admin_allowlist(event: APIGatewayProxyEvent) -> None:
    try:
        enforce_admin_allowlist(event)
    except Forbidden:
        record_allowlist_refusal(event, routed=bool(_methods_for(event.path)))
        raise


def guard_identity(event: APIGatewayProxyEvent) -> None:
    # Reset on every request, so no caller from an earlier invocation can linger.
    app.context[CALLER_CONTEXT_KEY] = None
    app.context[WEBHOOK_CONTEXT_KEY] = None
    settings = get_settings()
    if policy_for(event.path, settings) is Policy.PUBLIC:
        # A public path takes no credentials, routed or not (authenticate() would
        # return no identity): the route scan below is skipped for it.
        return
    if not _routed(event) and not is_admin_path(event.path, settings.admin_path_prefixes):
        # No route takes this method on this path: routing answers it (404, or 405 with
        # Allow) and no credential is checked or asked for, since none could make it
        # succeed. Under /admin and /monitoring every lock applies first, so neither
        # routes nor their methods can be enumerated.
        return
    identity = authenticate(event)
    app.context[CALLER_CONTEXT_KEY] = identity.caller
    app.context[WEBHOOK_CONTEXT_KEY] = identity.webhook


# Edge guards run in this order on every request, before routing (see resolver.py):
# cheapest refusals first, the admin allowlist before anything looks at content,
# identity before inspection (a webhook's signature is checked before its body is parsed).
app = SecureResolver(
    enable_validation=True,
    edge_guards=[
        guard_request_limits,
        guard_admin_allowlist,
        guard_identity,
        guard_attack_inspection,
    ],
)
app.include_router(health.router)
app.include_router(recalls.router)
app.include_router(subscriptions.router)
app.include_router(auth.router)
app.include_router(jwks.router)
app.include_router(webhooks.router)
app.include_router(admin_keys.router)
app.include_router(admin_users.router)
app.include_router(admin_blocks.router)


def _correlation_id() -> str | None:
    return app.current_event.request_context.request_id


def _response(error: DomainError) -> Response[Any]:
    http = to_http(error, _correlation_id())
    return Response(
        status_code=http.status,
        content_type=content_types.APPLICATION_JSON,
        body=http.body,
        headers=http.headers,
    )


@app.exception_handler(DomainError)
def handle_domain_error(error: DomainError) -> Response[Any]:
    _note_refused_delivery(error)
    return _response(error)


@app.exception_handler(RequestValidationError)
def handle_validation_error(error: RequestValidationError) -> Response[Any]:
    refusal = ValidationFailed.from_errors(error.errors())
    _note_refused_delivery(refusal)
    return _response(refusal)


@app.exception_handler(RequestUnsupportedContentType)
def handle_unsupported_content_type(_: RequestUnsupportedContentType) -> Response[Any]:
    # Powertools reads a body route's media type even when no body came. Our check
    # (request_limits.body_text) refuses a foreign one on POST, PUT and PATCH first;
    # this keeps any other way there a 415, not the catch-all's 500.
    return _response(UnsupportedMediaType())


@app.not_found
def handle_not_found(_: NotFoundError) -> Response[Any]:
    allowed = _methods_for(app.current_event.path)
    return _response(MethodNotAllowed(allowed) if allowed else NotFound())


@app.exception_handler(Exception)
def handle_unexpected(error: Exception) -> Response[Any]:
    correlation_id = _correlation_id()
    logger.exception("unhandled error in route", extra={"correlation_id": correlation_id})
    http = internal_error(correlation_id)
    return Response(
        status_code=http.status, content_type=content_types.APPLICATION_JSON, body=http.body
    )


def _route_methods(path: str) -> list[str]:
    """The methods of the routes that match a path."""
    return [
        route.method for route in app._static_routes + app._dynamic_routes if route.rule.match(path)
    ]


def _methods_for(path: str) -> list[str]:
    """The methods a path answers, to tell 405 from 404: its routes' and HEAD with GET
    (the resolver answers HEAD as GET)."""
    methods = _route_methods(path)
    return [*methods, "HEAD"] if "GET" in methods else methods


def _routed(event: APIGatewayProxyEvent) -> bool:
    """Whether routing will run a route for this request, as Powertools matches one:
    the method in upper case, the path. A HEAD the resolver serves is its GET by now."""
    return event.http_method.upper() in _route_methods(event.path)
