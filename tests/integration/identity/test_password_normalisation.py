"""POST /auth/login with a password typed on different keyboards: passwords are
NFKC-normalised before hashing (NIST SP 800-63B 5.1.1.2), and hashes made before that,
from the password as typed, still sign in and are remade from the normalised form.
Real handler, real PostgreSQL (RLS on) and the moto server."""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any

import pytest

from functions.shared.identity import passwords
from functions.shared.identity.passwords import (
    MAX_PASSWORD_CHARS,
    PasswordCheck,
    check_password,
    configured_params,
)
from tests.support.api import sign_in

COMPOSED = "Cr\u00e8me br\u00fbl\u00e9e, s'il vous pla\u00eet"  # pragma: allowlist secret
DECOMPOSED = unicodedata.normalize("NFD", COMPOSED)


def hash_as_before_normalisation(password: str) -> str:
    """A hash as hash_password made it before passwords were normalised: of the
    password as typed, at today's cost."""
    return passwords._encoded_hash(password, configured_params())


def _stored_hash(world, email: str) -> str:
    return str(world.query("SELECT password_hash FROM users WHERE email = %s", (email,))[0][0])


def _insert_with_hash(world, email: str, password_hash: str, role: str = "user") -> None:
    world.execute(
        "INSERT INTO users (email, password_hash, role) VALUES (%s, %s, %s)",
        (email, password_hash, role),
    )


@pytest.fixture
def scrypt_runs(monkeypatch) -> list[int]:
    """One entry per scrypt derivation (the real function still runs)."""
    runs: list[int] = []
    real = hashlib.scrypt

    def counted(password: bytes, **kwargs: Any) -> bytes:
        runs.append(len(password))
        return real(password, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counted)
    return runs


@pytest.mark.parametrize(
    ("registered", "typed"),
    [(COMPOSED, DECOMPOSED), (DECOMPOSED, COMPOSED)],
    ids=["composed then decomposed", "decomposed then composed"],
)
def test_a_user_signs_in_with_the_password_typed_on_another_keyboard(world, registered, typed):
    # Given a user who set their password on a keyboard that sends one form
    world.create_user("parent@example.com", registered)
    # When they sign in from one that sends the other
    response = sign_in("parent@example.com", typed)
    # Then they are in
    assert response.status == 200, response.body


def test_a_hash_made_before_normalisation_signs_in_and_is_remade_normalised(world):
    # Given a user whose hash was made from the decomposed password as typed
    _insert_with_hash(world, "parent@example.com", hash_as_before_normalisation(DECOMPOSED))
    before = _stored_hash(world, "parent@example.com")
    # When they sign in from that keyboard
    assert sign_in("parent@example.com", DECOMPOSED).status == 200
    # Then the hash is remade from the normalised form
    after = _stored_hash(world, "parent@example.com")
    assert after != before
    assert check_password(COMPOSED, after) == PasswordCheck(matched=True)
    # And from then on the other keyboard's form signs in too
    assert sign_in("parent@example.com", COMPOSED, source_ip="198.51.100.21").status == 200
    assert _stored_hash(world, "parent@example.com") == after


def test_an_admin_hash_made_before_normalisation_signs_in_and_is_kept(world):
    """An admin's hash is remade by an operator only (sql/024), also for normalisation."""
    legacy = hash_as_before_normalisation(DECOMPOSED)
    _insert_with_hash(world, "admin@example.com", legacy, role="admin")
    assert sign_in("admin@example.com", DECOMPOSED).status == 200
    assert _stored_hash(world, "admin@example.com") == legacy


def test_a_wrong_password_costs_what_an_unknown_email_does_when_normalisation_changes_it(
    world, scrypt_runs
):
    world.create_user("parent@example.com", "something else entirely")
    sign_in("warm-up@example.com", "x", source_ip="198.51.100.250")  # the dummy hash is made
    scrypt_runs.clear()
    assert sign_in("parent@example.com", DECOMPOSED, source_ip="198.51.100.1").status == 401
    known = len(scrypt_runs)
    scrypt_runs.clear()
    assert sign_in("nobody@example.com", DECOMPOSED, source_ip="198.51.100.2").status == 401
    assert known == len(scrypt_runs) == 2


def test_an_ascii_sign_in_runs_scrypt_once(world, scrypt_runs):
    world.create_user("parent@example.com", "correct horse")
    scrypt_runs.clear()
    assert sign_in("parent@example.com", "correct horse").status == 200
    assert len(scrypt_runs) == 1


def test_a_password_over_the_limit_once_normalised_is_a_422_before_any_check(world, scrypt_runs):
    # Given a password of 57 code points that NFKC makes 1026 (U+FDFA is 18)
    world.create_user("parent@example.com", "correct horse")
    expanding = "\ufdfa" * 57
    scrypt_runs.clear()
    # When it is sent
    response = sign_in("parent@example.com", expanding)
    # Then it is refused as too long, without a password check or its attempt counted
    assert response.status == 422
    assert response.json()["error"]["problems"] == [
        {"field": "body.password", "problem": "of the wrong length"}
    ]
    assert "\ufdfa" not in response.body
    assert scrypt_runs == []
    assert sign_in("parent@example.com", "correct horse").status == 200


def test_a_password_within_the_limit_once_normalised_is_not_refused_for_its_typed_length(
    world,
):
    # 1024 characters once normalised, 2048 from a keyboard that decomposes them
    world.create_user("parent@example.com", "\u00e9" * MAX_PASSWORD_CHARS)
    assert sign_in("parent@example.com", "e\u0301" * MAX_PASSWORD_CHARS).status == 200
    # One more is over, as typed in either form
    over = sign_in("parent@example.com", "e\u0301" * (MAX_PASSWORD_CHARS + 1))
    assert over.status == 422
    assert sign_in("parent@example.com", "\u00e9" * (MAX_PASSWORD_CHARS + 1)).status == 422


def test_nuls_appended_to_a_password_made_before_normalisation_do_not_sign_in(world):
    _insert_with_hash(world, "parent@example.com", hash_as_before_normalisation(DECOMPOSED))
    attempts = (DECOMPOSED + "\x00", COMPOSED + "\x00", DECOMPOSED + "\x00\x00")
    for index, typed in enumerate(attempts):
        response = sign_in("parent@example.com", typed, source_ip=f"198.51.100.{30 + index}")
        assert response.status == 401
    assert sign_in("parent@example.com", DECOMPOSED, source_ip="198.51.100.40").status == 200
