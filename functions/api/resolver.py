"""The API's resolver: Powertools' REST resolver with a security edge around it.

Powertools runs its request validation before any `app.use()` middleware, and
exception handlers' responses skip middleware. A security edge must not depend
on either, so this resolver wraps `resolve()`:

1. an event without the REST proxy shape (API Gateway's: strings where it sends
   strings) is a 400, so no guard or Powertools property trips over a null or a
   number and answers 500;
2. edge guards run on the raw event, before routing and before pydantic sees the
   body: header and body limits, the admin allowlist, attack inspection;
3. Powertools routes, validates and runs the handler (with `app.use()` middleware
   for per-request identity);
4. any exception that escapes becomes a 500 with a correlation id;
5. security headers are set on whatever comes out, errors and 404s included.

HEAD is answered wherever GET is (RFC 9110 9.3.2; uptime monitors probe with it):
the request runs as the GET it stands for, through every guard, and the answer
keeps its status and headers without the body.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.api.middleware.security_headers import apply_security_headers
from functions.shared.errors import BadRequest, DomainError, HttpError, internal_error, to_http
from functions.shared.observability import logger

EdgeGuard = Callable[[APIGatewayProxyEvent], None]


def proxy_response(error: HttpError) -> dict[str, Any]:
    """An API Gateway proxy response for an error, in the same shape Powertools builds."""
    headers = {"Content-Type": ["application/json"]}
    headers.update({name: [value] for name, value in error.headers.items()})
    return {
        "statusCode": error.status,
        "multiValueHeaders": headers,
        "body": json.dumps(error.body, separators=(",", ":")),
        "isBase64Encoded": False,
    }


def correlation_id_of(event: Any) -> str | None:
    context = event.get("requestContext") if isinstance(event, Mapping) else None
    if isinstance(context, dict):
        request_id = context.get("requestId")
        if isinstance(request_id, str):
            return request_id
    return None


def _strings(value: Any) -> bool:
    """None, or a map of strings to strings (a single-value header or query map)."""
    if value is None:
        return True
    if not isinstance(value, dict):
        return False
    # Plain loops: this runs on every request, and all() over a generator costs more.
    for name, item in value.items():  # noqa: SIM110 - a loop costs less than all()
        if not (isinstance(name, str) and isinstance(item, str)):
            return False
    return True


def _string_lists(value: Any) -> bool:
    """None, or a map of strings to lists of strings (a multi-value map)."""
    if value is None:
        return True
    if not isinstance(value, dict):
        return False
    for name, items in value.items():
        if not (isinstance(name, str) and isinstance(items, list)):
            return False
        for item in items:
            if not isinstance(item, str):
                return False
    return True


def is_rest_proxy_event(event: Any) -> bool:
    """The fields the edge and Powertools read, with the types API Gateway's REST
    proxy integration gives them. Anything else did not come through API Gateway
    (a direct invoke, an HTTP API v2 event) and is refused, not half-read."""
    if not isinstance(event, Mapping):
        return False
    context = event.get("requestContext")
    identity = context.get("identity") if isinstance(context, dict) else None
    return (
        isinstance(event.get("path"), str)
        and event["path"].startswith("/")
        and isinstance(event.get("httpMethod"), str)
        and (event.get("body") is None or isinstance(event["body"], str))
        and isinstance(event.get("isBase64Encoded", False), bool)
        and _strings(event.get("headers"))
        and _string_lists(event.get("multiValueHeaders"))
        and _strings(event.get("queryStringParameters"))
        and _string_lists(event.get("multiValueQueryStringParameters"))
        and isinstance(context, dict)
        and isinstance(context.get("requestId"), str)
        and isinstance(identity, dict)
        and isinstance(identity.get("sourceIp"), str)
    )


class SecureResolver(APIGatewayRestResolver):
    def __init__(self, *, edge_guards: Sequence[EdgeGuard] = (), **kwargs: Any):
        super().__init__(**kwargs)
        self._edge_guards = tuple(edge_guards)

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        correlation_id = correlation_id_of(event)
        if not is_rest_proxy_event(event):
            # No field values in the line: the event may hold credentials.
            logger.warning("malformed API event refused", extra={"correlation_id": correlation_id})
            return apply_security_headers(proxy_response(to_http(BadRequest(), correlation_id)))
        head = event["httpMethod"] == "HEAD"
        if head:
            event = {**event, "httpMethod": "GET"}
        try:
            request = APIGatewayProxyEvent(dict(event))
            for guard in self._edge_guards:
                guard(request)
            response = super().resolve(event, context)
        except DomainError as error:
            response = proxy_response(to_http(error, correlation_id))
        except Exception:  # noqa: BLE001 - the last line of defence: no trace may leak
            logger.exception("unhandled error", extra={"correlation_id": correlation_id})
            response = proxy_response(internal_error(correlation_id))
        if head:
            response["body"] = ""
            response["isBase64Encoded"] = False
        return apply_security_headers(response)
