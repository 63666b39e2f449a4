"""GET /.well-known/jwks.json: the public keys that verify access tokens
(functions/api/identity/sign_in.py::published_keys)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from functions.api.identity.sign_in import published_keys

router = APIGatewayRouter()  # type: ignore[no-untyped-call]


@router.get(
    "/.well-known/jwks.json",
    summary="Token verification keys",
    tags=["auth"],
    responses={
        200: {"description": "A JSON Web Key Set: the current and previous signing keys"},
        503: {"description": "The signing keys cannot be read right now."},
    },
)
def jwks() -> dict[str, Any]:
    return published_keys()
