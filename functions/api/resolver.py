"""The API's resolver: Powertools' REST resolver with a security edge around it.

Powertools runs its request validation before any `app.use()` middleware, and
exception handlers' responses skip middleware. A security edge must not depend
on either, so this resolver wraps `resolve()`:

1. edge guards run on the raw event, before routing and before pydantic sees the
   body: header and body limits, the admin allowlist, attack inspection;
2. Powertools routes, validates and runs the handler (with `app.use()` middleware
   for per-request identity);
3. any exception that escapes becomes a 500 with a correlation id;
4. security headers are set on whatever comes out, errors and 404s included.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.api.middleware.security_headers import apply_security_headers
from functions.shared.errors import DomainError, HttpError, internal_error, to_http
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


def correlation_id_of(event: Mapping[str, Any]) -> str | None:
    context = event.get("requestContext")
    if isinstance(context, dict):
        request_id = context.get("requestId")
        if isinstance(request_id, str):
            return request_id
    return None


class SecureResolver(APIGatewayRestResolver):
    def __init__(self, *, edge_guards: Sequence[EdgeGuard] = (), **kwargs: Any):
        super().__init__(**kwargs)
        self._edge_guards = tuple(edge_guards)

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        correlation_id = correlation_id_of(event)
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
        return apply_security_headers(response)
