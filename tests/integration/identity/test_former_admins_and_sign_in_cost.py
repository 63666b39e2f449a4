"""What a former admin can still reach, and what sign-in tells of which emails have
accounts once the password-hashing cost was raised. Real handler, real PostgreSQL
(RLS on) and the moto server."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from functions.shared.identity.passwords import ScryptParams, hash_password
from tests.integration.identity.conftest import ADMIN_IP
from tests.support.api import call_api, sign_in


def _scrypt_work_of(action: Callable[[], Any], monkeypatch: pytest.MonkeyPatch) -> int:
    """The scrypt work (the sum of n * r * p over every derivation) `action` does:
    what a sign-in's time is made of, counted rather than timed."""
    real = hashlib.scrypt
    work = 0

    def counted(password: bytes, **kwargs: Any) -> bytes:
        nonlocal work
        work += kwargs["n"] * kwargs["r"] * kwargs["p"]
        return real(password, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counted)
    try:
        action()
    finally:
        monkeypatch.setattr(hashlib, "scrypt", real)
    return work


def test_after_a_scrypt_cost_raise_a_wrong_password_costs_what_an_unknown_email_does(
    world, monkeypatch
):
    """After the operator raises SCRYPT_N (hashes are re-made on each owner's next
    sign-in), an account not signed in since keeps its cheaper hash. A wrong password
    for it must cost the work of the configured cost, as an unknown email does against
    the dummy hash: else whether an email is registered reads off the clock."""
    from functions.shared.settings import get_settings

    # An account hashed under the cost in force when it was made
    earlier_cost = ScryptParams(2**11, 8, 1)
    with world.db.admin() as conn:
        conn.execute(
            "INSERT INTO users (email, password_hash, role) VALUES (%s, %s, 'user')",
            ("parent@example.com", hash_password("right-password", earlier_cost)),
        )
    # The operator raises the cost
    monkeypatch.setenv("SCRYPT_N", str(2**15))
    monkeypatch.setenv("SCRYPT_R", "8")
    get_settings.cache_clear()
    # A long-lived instance has made its dummy hash already
    sign_in("warm-up@example.com", "x", source_ip="198.51.100.250")

    def wrong_password(email: str, source_ip: str) -> Callable[[], None]:
        def attempt() -> None:
            assert sign_in(email, "not-the-password", source_ip=source_ip).status == 401

        return attempt

    known = _scrypt_work_of(wrong_password("parent@example.com", "198.51.100.1"), monkeypatch)
    unknown = _scrypt_work_of(wrong_password("nobody@example.com", "198.51.100.2"), monkeypatch)

    assert unknown == 2**15 * 8
    assert known == unknown
    # And the owner's next sign-in still works, and re-makes the hash at the new cost
    assert sign_in("parent@example.com", "right-password", source_ip="198.51.100.3").status == 200
    (stored,) = world.query("SELECT password_hash FROM users WHERE email = 'parent@example.com'")[0]
    assert stored.startswith(f"scrypt${2**15}$8$")


def test_a_demoted_admin_with_unexpired_admin_token_and_admin_key_is_refused(world):
    """An admin demoted to user keeps an admin-role token for up to its lifetime and an
    admin-scoped key; neither, together or with a colleague's, may reach /admin once
    the database says the person is no longer an admin."""
    former = world.create_user("former@example.com", role="admin")
    colleague = world.create_user("colleague@example.com", role="admin")
    former_headers = world.admin_headers(former)
    colleague_key = world.create_key(colleague, scopes=("admin", "recalls:read"))
    assert call_api("GET", "/admin/users", headers=former_headers, source_ip=ADMIN_IP).status == 200

    world.execute("UPDATE users SET role = 'user' WHERE id = %s", (former,))

    for method, path in (
        ("GET", "/admin/users"),
        ("HEAD", "/admin/users"),
        ("GET", "/admin/api-keys"),
        ("GET", "/admin/users/"),
    ):
        response = call_api(method, path, headers=former_headers, source_ip=ADMIN_IP)
        assert response.status == 403, (method, path, response.status)
    # Pairing the still-valid admin token with a colleague's admin key does not help.
    mixed = {"X-API-Key": colleague_key, "Authorization": former_headers["Authorization"]}
    assert call_api("GET", "/admin/users", headers=mixed, source_ip=ADMIN_IP).status == 403
    # And the demoted person cannot mint or revoke keys.
    created = call_api(
        "POST",
        "/admin/api-keys",
        headers=former_headers,
        source_ip=ADMIN_IP,
        json_body={"owner_id": str(former), "scopes": ["admin"]},
    )
    assert created.status == 403
    assert world.query("SELECT count(*) FROM api_keys WHERE owner_id = %s", (former,))[0][0] == 1
