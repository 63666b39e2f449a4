"""The baseline: a bare Powertools REST resolver, no edge guards, no validation.

The same routes call the same domain logic and, on `/recalls`, the same API-key
check as our handler (identity lookup, SHA-256 compare, per-key rate limit,
audit line) inline in the route (`check_key`), so what our handler adds over
this is exactly the chain: request limits, admin allowlist, the authentication policy table, attack
inspection, pydantic validation, the error mapping and the security headers.
It serves an attack request like any other, which is what "no middleware" means.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.logging import correlation_paths

from functions.api.recalls import logic
from functions.api.recalls.models import DEFAULT_PAGE_SIZE
from functions.shared.errors import DomainError, Forbidden, Unauthorized, to_http
from functions.shared.observability import logger, metrics

app = APIGatewayRestResolver()


def check_key(raw: str, source_ip: str) -> None:
    """The steps of functions/api/middleware/authentication.py::_key_caller, in line:
    parse, look the key up, compare the SHA-256 in constant time, check the scope,
    count the request against the key's limit in DynamoDB, audit."""
    from functions.api.identity.audit import audit
    from functions.api.identity.store import api_key_record
    from functions.api.middleware.authentication import enforce_key_rate_limit
    from functions.shared.identity.api_keys import (
        SCOPE_RECALLS_READ,
        ApiKeyRejected,
        check_api_key,
    )

    try:
        record = check_api_key(raw, api_key_record)
    except ApiKeyRejected as rejected:
        audit("api_key", "failure", reason=rejected.reason, source_ip=source_ip)
        raise Unauthorized() from rejected
    if SCOPE_RECALLS_READ not in record.scopes:
        audit("api_key", "failure", reason="missing_scope", source_ip=source_ip)
        raise Forbidden()
    enforce_key_rate_limit(record, source_ip)
    audit("api_key", "success", key_id=record.key_id, user_id=record.owner_id, source_ip=source_ip)


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/recalls")
def search_recalls() -> dict[str, Any]:
    event = app.current_event
    raw_key = event.headers.get("x-api-key")
    if raw_key is not None:
        check_key(raw_key, event.request_context.identity.source_ip or "")
    query = event.query_string_parameters or {}
    page = logic.search_recalls(
        q=query.get("q"),
        brand=query.get("brand"),
        limit=int(query.get("limit", DEFAULT_PAGE_SIZE)),
        cursor=query.get("cursor"),
    )
    return page.model_dump(mode="json")


@app.exception_handler(DomainError)
def domain_error(error: DomainError) -> Any:
    from aws_lambda_powertools.event_handler import Response, content_types

    http = to_http(error, None)
    return Response(
        status_code=http.status,
        content_type=content_types.APPLICATION_JSON,
        body=http.body,
        headers=http.headers,
    )


# The same observability decorators as functions/api/handler.py: they are not
# part of the security chain, so the baseline pays for them too.
@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False
)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
