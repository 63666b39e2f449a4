"""GET /.well-known/jwks.json: the public keys that verify access tokens.

Both live keys are published (AWSCURRENT and, during a rotation's grace window,
AWSPREVIOUS), so a relying party can verify every token the API still accepts.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from functions.shared.errors import ServiceUnavailable
from functions.shared.observability import logger

router = APIGatewayRouter()  # type: ignore[no-untyped-call]


@router.get("/.well-known/jwks.json", summary="Token verification keys", tags=["auth"])
def jwks() -> dict[str, Any]:
    from functions.shared.identity.jwt_keys import KeyMaterialError, key_store
    from functions.shared.identity.secret_versions import SecretUnavailable

    try:
        return key_store().key_ring().jwks()
    except (SecretUnavailable, KeyMaterialError) as exc:
        logger.exception("JWT keys unavailable")
        raise ServiceUnavailable() from exc
