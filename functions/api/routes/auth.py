"""POST /auth/login (email + password -> access token) and GET /auth/me over HTTP;
what they do is functions/api/identity/sign_in.py."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from functions.api.caller_context import require_caller
from functions.api.identity.sign_in import LoginRequest, Me, TokenResponse, sign_in, who_am_i

router = APIGatewayRouter()  # type: ignore[no-untyped-call]


@router.post(
    "/auth/login",
    summary="Sign in",
    tags=["auth"],
    responses={
        200: {"description": "An access token"},
        401: {"description": "Invalid email or password."},
        429: {"description": "Too many failed sign-ins for the account or the address."},
        503: {"description": "Sign-in cannot be checked or tokens signed right now."},
    },
)
def login(credentials: LoginRequest) -> TokenResponse:
    return sign_in(credentials, router.current_event.request_context.identity.source_ip or "")


@router.get("/auth/me", summary="Who am I", tags=["auth"])
def me() -> Me:
    return who_am_i(require_caller(router))
