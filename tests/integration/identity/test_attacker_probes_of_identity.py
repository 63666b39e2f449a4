"""Authentication and authorization probed as an attacker would: a signed-route setting
spelled with a trailing slash, a password with NULs appended, lockout by other spellings
of one email, and RLS under real tokens. Real handler, real PostgreSQL (RLS on) and the
moto server, through the fixtures of tests/integration/identity/conftest.py.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.identity.conftest import ADMIN_IP
from tests.support.api import call_api, sign_in


def _sign_routes(monkeypatch: pytest.MonkeyPatch, routes: str) -> None:
    from functions.shared.settings import get_settings

    monkeypatch.setenv("ADMIN_SIGNED_ROUTES", routes)
    get_settings.cache_clear()


@pytest.mark.parametrize("pattern", ["POST /admin/api-keys/", "POST /admin/api-keys//"])
def test_a_signed_route_written_with_a_trailing_slash_still_needs_the_signature(
    world, monkeypatch, pattern
):
    """An operator requires signed requests for key creation and writes the route with
    a trailing slash (`babyshield:adminSignedRoutes = "POST /admin/api-keys/"`), which
    the deployment config accepts. They expect a create with the whole key in X-API-Key
    to be refused (the secret must never travel on a signed route): the resolver routes
    `/admin/api-keys/` and `/admin/api-keys` alike, and ARCHITECTURE.md says the match is
    on the path "with slashes collapsed, trailing one dropped". The pattern is read the
    same way: were only the request path canonicalised, the pattern would match no
    request and signing would be silently off (fail open)."""
    _sign_routes(monkeypatch, pattern)
    admin = world.create_user("root@example.com", role="admin")

    created = call_api(
        "POST",
        "/admin/api-keys",
        headers=world.admin_headers(admin),
        json_body={"owner_id": str(admin), "scopes": ["recalls:read"]},
        source_ip=ADMIN_IP,
    )

    assert created.status == 401, (created.status, created.body[:200])
    assert world.query("SELECT count(*) FROM api_keys")[0][0] == 1  # only the caller's own


def test_a_password_with_nul_characters_appended_is_not_the_password(world):
    """A user's password is `correct horse`. Someone signs in with `correct horse`
    followed by NUL characters (JSON `\\u0000`), a different password: 401. scrypt
    runs PBKDF2-HMAC-SHA256 with the password as the HMAC key, and HMAC pads a key
    shorter than its 64-byte block with zero bytes, so without the guard in
    functions/shared/identity/passwords.py every password under 64 bytes would equal
    itself with NULs appended. The login's password is opaque to attack inspection, so
    nothing else refuses it."""
    world.create_user("parent@example.com", "correct horse")

    for suffix in ("\u0000", "\u0000\u0000\u0000"):
        attempt = "correct horse" + suffix  # pragma: allowlist secret
        body = json.dumps({"email": "parent@example.com", "password": attempt})
        answer = call_api(
            "POST",
            "/auth/login",
            body=body,
            headers={"Content-Type": "application/json"},
            source_ip="198.51.100.20",
        )
        assert answer.status == 401, (repr(suffix), answer.status)


# --- Regression tests (pass today) ---------------------------------------------------


def test_spellings_of_one_email_share_its_lockout(world):
    """Regression: an attacker spreads guesses over spellings of one email (letter case,
    surrounding whitespace, a Unicode line break that strip() removes) and over source
    addresses, hoping each spelling gets its own budget. The account's lock must hold
    for every spelling, the right password included."""
    world.create_user("parent@example.com", "correct horse")
    spellings = [
        "Parent@Example.com",
        " parent@example.com",
        "PARENT@EXAMPLE.COM\t",
        "parent@example.com\u0085",
        "pArEnT@eXaMpLe.CoM",
    ]
    for number, email in enumerate(spellings):
        assert sign_in(email, "wrong", source_ip=f"203.0.113.{number + 1}").status == 401

    locked = sign_in("  PaReNt@example.COM ", "correct horse", source_ip="203.0.113.99")
    assert locked.status == 429
    assert locked.header("Retry-After")


def test_an_admins_token_on_its_own_routes_reaches_only_its_own_subscriptions(world):
    """Regression: row-level security lets an admin session read every user and key;
    the subscriptions policy must not. An admin's genuine token on /me/subscriptions
    (RLS role `admin`) neither lists nor deletes another user's watch, and a second user
    cannot delete it either; the owner still has it."""
    owner = world.create_user("owner@example.com")
    other = world.create_user("other@example.com")
    admin = world.create_user("root@example.com", role="admin")

    def bearer(user_id, role="user"):
        return {"Authorization": f"Bearer {world.token(user_id, role)}"}

    created = call_api(
        "POST", "/me/subscriptions", headers=bearer(owner), json_body={"product": "crib"}
    )
    assert created.status == 201
    watch = created.json()["id"]

    for caller in (bearer(admin, "admin"), bearer(other)):
        assert call_api("GET", "/me/subscriptions", headers=caller).json() == {"items": []}
        gone = call_api("DELETE", f"/me/subscriptions/{watch}", headers=caller)
        assert gone.status == 404

    listed = call_api("GET", "/me/subscriptions", headers=bearer(owner)).json()["items"]
    assert [item["id"] for item in listed] == [watch]
