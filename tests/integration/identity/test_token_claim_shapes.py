"""Signed tokens whose claims have shapes the issuer never writes: a leaked signing
key, or a future issuer, must meet a strict verifier that answers 401, not 500."""

from __future__ import annotations

import pytest

from tests.support.api import call_api
from tests.support.identity import access_claims, client, forge_token, jwt_secret_id


def _current_kid() -> str:
    stages = client("secretsmanager").describe_secret(SecretId=jwt_secret_id())
    return str(next(v for v, s in stages["VersionIdsToStages"].items() if "AWSCURRENT" in s))


@pytest.mark.parametrize("role", [["admin"], {"admin": True}], ids=["list", "object"])
@pytest.mark.parametrize("path", ["/auth/me", "/recalls"])
def test_a_token_whose_role_claim_is_not_a_string_is_a_401_not_a_500(world, role, path):
    """A signed token whose `role` claim is a JSON array or object answered 500
    "Internal server error" (and logged a TypeError trace) instead of 401.

    tokens.py checks `role not in ROLES`, a frozenset: membership of an unhashable
    value raises TypeError, which nothing in verify_access_token or check_token
    caught, so the resolver's last line of defence turned it into a 500. Every other
    malformed claim (sub, jti, typ, iat as a list or object) is a 401 with the
    invalid_token challenge and a `token_failed` audit line; this one alone is
    counted as a server error, pages no one about a bad token, and is absent from the
    TokenValidationErrors metric. It needs a token signed by a live key (a leaked key,
    or a future issuer that writes roles as a list, as many IdPs do), which is
    exactly when the verifier must stay strict and quiet."""
    user_id = world.create_user("parent@example.com")
    claims = access_claims(str(user_id))
    claims["role"] = role
    token = forge_token(claims, kid=_current_kid())

    response = call_api("GET", path, headers={"Authorization": f"Bearer {token}"})

    assert response.status == 401, (response.status, response.body)
