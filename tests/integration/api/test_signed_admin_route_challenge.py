"""A 401 on an admin route listed in ADMIN_SIGNED_ROUTES, through the real handler: the
challenge names the request-signature headers the route needs, not X-API-Key, which
the route refuses (functions/api/middleware/admin_chain.py). Every key or signature
failure there gets the same challenge and message, so the answer says what to send,
never why a signature failed."""

from __future__ import annotations

import time
from typing import Any

import pytest

from functions.api.middleware.admin_chain import sign_admin_request
from tests.integration.identity.conftest import ADMIN_IP, IdentityWorld, world
from tests.support.api import ApiResponse, call_api
from tests.support.identity import identity_env

__all__ = ["identity_env", "world"]

SIGNATURE_CHALLENGE = (
    'ApiKey-Signature realm="babyshield", '
    'headers="X-API-Key-Id X-Signature-Timestamp X-Signature-Nonce X-Signature"'
)
API_KEY_CHALLENGE = 'ApiKey realm="babyshield", header="X-API-Key"'


def _sign_routes(monkeypatch: pytest.MonkeyPatch, routes: str) -> None:
    from functions.shared.settings import get_settings

    monkeypatch.setenv("ADMIN_SIGNED_ROUTES", routes)
    get_settings.cache_clear()


def _admin(world: IdentityWorld, email: str) -> tuple[Any, str]:
    admin = world.create_user(email, role="admin")
    return admin, world.create_key(admin, scopes=("admin", "recalls:read"))


def _admin_users(headers: dict[str, str]) -> ApiResponse:
    return call_api("GET", "/admin/users", headers=headers, source_ip=ADMIN_IP)


def _unknown_key(key: str) -> str:
    return "bs_0123456789abcdef_" + key.split("_", 2)[2]


@pytest.mark.parametrize(
    "credential",
    ["none", "whole-key", "wrong-path", "stale", "unknown-key", "signature-missing"],
)
def test_a_signed_route_401_names_the_signature_headers(world, monkeypatch, credential):
    # Given a route that needs a request signature and an admin with a valid token
    _sign_routes(monkeypatch, "GET /admin/users")
    admin, key = _admin(world, "signing-admin@example.com")
    headers = {"Authorization": f"Bearer {world.token(admin, 'admin')}"}
    signed = {
        "none": {},
        "whole-key": {"X-API-Key": key},
        "wrong-path": sign_admin_request(key, "GET", "/admin/other"),
        "stale": sign_admin_request(key, "GET", "/admin/users", timestamp=int(time.time()) - 600),
        "unknown-key": sign_admin_request(_unknown_key(key), "GET", "/admin/users"),
        "signature-missing": {
            name: value
            for name, value in sign_admin_request(key, "GET", "/admin/users").items()
            if name != "X-Signature"
        },
    }[credential]

    # When the key's lock fails
    answer = _admin_users(headers | signed)

    # Then the challenge names the signature headers, and nothing says which failure it was
    assert answer.status == 401
    assert answer.header("WWW-Authenticate") == SIGNATURE_CHALLENGE
    assert answer.json()["error"]["message"] == "Authentication is required."


def test_the_challenge_names_exactly_the_headers_a_signing_client_sends():
    from functions.shared.errors import ADMIN_SIGNATURE_CHALLENGE

    key = "bs_0123456789abcdef_" + "A" * 43  # pragma: allowlist secret
    sent = sign_admin_request(key, "GET", "/admin/users")

    challenge = ADMIN_SIGNATURE_CHALLENGE["WWW-Authenticate"]
    named = challenge.split('headers="', 1)[1].rstrip('"').split(" ")

    assert challenge == SIGNATURE_CHALLENGE
    assert sorted(named) == sorted(sent)


def test_a_signed_route_still_asks_for_the_token_with_the_bearer_challenge(world, monkeypatch):
    _sign_routes(monkeypatch, "GET /admin/users")
    _, key = _admin(world, "tokenless-admin@example.com")

    answer = _admin_users(sign_admin_request(key, "GET", "/admin/users"))

    assert answer.status == 401
    assert answer.header("WWW-Authenticate") == 'Bearer realm="babyshield"'


def test_an_unsigned_route_keeps_the_api_key_challenge(world, monkeypatch):
    # A route not listed takes X-API-Key, so that is what its 401 asks for.
    _sign_routes(monkeypatch, "POST /admin/api-keys*")
    admin, _ = _admin(world, "plain-admin@example.com")

    answer = _admin_users({"Authorization": f"Bearer {world.token(admin, 'admin')}"})

    assert answer.status == 401
    assert answer.header("WWW-Authenticate") == API_KEY_CHALLENGE
