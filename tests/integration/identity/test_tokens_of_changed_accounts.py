"""An access token is signed once and lives up to its lifetime; the account behind it
can be deleted or have its role changed meanwhile. The routes a token alone opens
(`/auth/me`, `/me/...`) answer for the account as the database holds it now. Real
handler, real PostgreSQL (RLS on) and the moto server."""

from __future__ import annotations

import uuid

from tests.support.api import call_api
from tests.support.identity import reset_identity_caches, rotate_jwt_secret
from tests.support.logs import json_log_lines


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_deleted_accounts_unexpired_token_opens_no_user_route(world, caplog):
    user = world.create_user("leaving@example.com")
    headers = _bearer(world.token(user))
    assert call_api("GET", "/auth/me", headers=headers).status == 200
    created = call_api("POST", "/me/subscriptions", headers=headers, json_body={"product": "crib"})
    assert created.status == 201

    world.execute("DELETE FROM users WHERE id = %s", (user,))

    for method, path, body in (
        ("GET", "/auth/me", None),
        ("HEAD", "/auth/me", None),
        ("GET", "/me/subscriptions", None),
        ("POST", "/me/subscriptions", {"product": "stroller"}),
        ("DELETE", f"/me/subscriptions/{uuid.uuid4()}", None),
    ):
        response = call_api(method, path, headers=headers, json_body=body)
        assert response.status == 401, (method, path, response.status, response.body)
        assert "invalid_token" in response.headers.get("WWW-Authenticate", "")
    # The refusal is audited like any other refused token, naming why.
    refusals = [
        line
        for line in json_log_lines(caplog)
        if line.get("auth_event") == "token_failed" and line.get("reason") == "account_gone"
    ]
    assert len(refusals) == 5
    assert {line["user_id"] for line in refusals} == {str(user)}


def test_user_routes_see_the_role_the_database_holds_not_the_tokens(world):
    """A demoted admin's token still says `admin`; `/auth/me` must not. A promoted
    user's token says `user`, and a token never grants more than it says."""
    demoted = world.create_user("demoted@example.com", role="admin")
    promoted = world.create_user("promoted@example.com", role="user")
    demoted_headers = _bearer(world.token(demoted, role="admin"))
    promoted_headers = _bearer(world.token(promoted, role="user"))
    assert call_api("GET", "/auth/me", headers=demoted_headers).json()["role"] == "admin"

    world.execute("UPDATE users SET role = 'user' WHERE id = %s", (demoted,))
    world.execute("UPDATE users SET role = 'admin' WHERE id = %s", (promoted,))

    me = call_api("GET", "/auth/me", headers=demoted_headers)
    assert me.status == 200
    assert me.json() == {"user_id": str(demoted), "role": "user", "authenticated_by": "jwt"}
    assert call_api("GET", "/auth/me", headers=promoted_headers).json()["role"] == "user"
    # The account is still there: its own routes keep working.
    assert call_api("GET", "/me/subscriptions", headers=demoted_headers).status == 200


def test_a_genuine_token_is_accepted_and_one_signed_before_a_rotation_too(world):
    user = world.create_user("staying@example.com")
    token = world.token(user)
    me = call_api("GET", "/auth/me", headers=_bearer(token))
    assert me.status == 200
    assert me.json() == {"user_id": str(user), "role": "user", "authenticated_by": "jwt"}
    # A fresh instance after a rotation still verifies it, with the previous key.
    rotate_jwt_secret()
    reset_identity_caches()
    assert call_api("GET", "/auth/me", headers=_bearer(token)).status == 200
