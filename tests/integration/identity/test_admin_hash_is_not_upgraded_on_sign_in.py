"""POST /auth/login for an admin whose password hash was made with another cost.

The sign-in's rehash goes through `auth.replace_password_hash`, which since sql/024
changes a regular user's hash only: SQL injected on both request tiers could read an
admin's stored hash on one and hand it to the function on the other, setting the
admin's password. An admin's hash is remade by an operator; the sign-in still works.
"""

from __future__ import annotations

from functions.shared.identity.tokens import verify_access_token
from tests.support.api import sign_in as login


def test_an_admin_with_an_older_cost_hash_signs_in_and_keeps_the_hash(world, monkeypatch):
    from functions.shared.settings import get_settings

    # Given an admin whose hash was made with another cost than today's setting
    world.create_user("admin@example.com", "correct horse", role="admin")
    (before,) = world.query("SELECT password_hash FROM users")[0]
    monkeypatch.setenv("SCRYPT_N", "32")
    get_settings.cache_clear()
    # When they sign in
    response = login("admin@example.com", "correct horse")
    # Then they get an admin's token, and the stored hash is the one they had
    assert response.status == 200
    assert verify_access_token(response.json()["access_token"]).role == "admin"
    assert world.query("SELECT password_hash FROM users") == [(before,)]
    # And the next sign-in works the same
    assert login("admin@example.com", "correct horse").status == 200
