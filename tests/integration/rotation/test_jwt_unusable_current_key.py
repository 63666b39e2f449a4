"""The API while AWSCURRENT of the JWT secret holds no usable key pair (a console edit,
a bad paste; a rotation's testSecret never promotes one): sign-in answers 503 and
says why in the log, and every token the previous key signed keeps working.

The real API handler against a private PostgreSQL database and the moto server.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from functions.shared.identity.jwt_keys import generate_jwt_secret_value
from functions.shared.identity.passwords import hash_password
from functions.shared.identity.tokens import issue_access_token
from tests.support.api import ApiResponse, call_api, sign_in
from tests.support.identity import (
    create_jwt_secret,
    identity_env,
    jwt_secret_id,
    reset_identity_caches,
    retire_previous,
    rotate_secret,
)
from tests.support.logs import raw_log_text
from tests.support.postgres import MigratedDatabase

__all__ = ["identity_env"]

EMAIL = "parent@example.com"
PASSWORD = "correct horse"  # pragma: allowlist secret


@pytest.fixture
def user(identity_env: str, api_db: MigratedDatabase, monkeypatch: pytest.MonkeyPatch) -> uuid.UUID:
    """A user who can sign in, and the first key pair (AWSCURRENT)."""
    from functions.shared.settings import get_settings

    monkeypatch.setenv("TEST_CALLER_IDENTITY", "0")
    get_settings.cache_clear()
    create_jwt_secret()
    with api_db.admin() as conn:
        row = conn.execute(
            "INSERT INTO users (email, password_hash, role) VALUES (%s, %s, %s) RETURNING id",
            (EMAIL, hash_password(PASSWORD), "user"),
        ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def _pair() -> dict[str, Any]:
    return dict(json.loads(generate_jwt_secret_value("ES256")))


def _encrypted_private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"not-stored"),
        )
        .decode("ascii")
    )


def _with_private_key(private_key: Callable[[], str]) -> Callable[[], str]:
    def value() -> str:
        pair = _pair()
        pair["private_key"] = private_key()
        return json.dumps(pair)

    return value


# A PEM's armour lines, built so that no line of this file looks like a key.
PEM_BEGIN = "-----BEGIN " + "PRIVATE KEY-----"
PEM_END = "-----END " + "PRIVATE KEY-----"

# Values whose public key loads (so verification was never in question) but which
# cannot sign: before, the first two were a 500 with a stack trace, and the third
# signed tokens that every verifier refused (bad_signature) while sign-in said 200.
UNSIGNABLE = {
    "private key not PEM": _with_private_key(lambda: f"{PEM_BEGIN}\nAAAA\n{PEM_END}\n"),
    "private key encrypted": _with_private_key(_encrypted_private_key),
    "private key of another pair": _with_private_key(lambda: str(_pair()["private_key"])),
}


def _me(token: str) -> ApiResponse:
    return call_api("GET", "/auth/me", headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize("value", UNSIGNABLE.values(), ids=list(UNSIGNABLE))
def test_sign_in_is_503_when_the_current_private_key_cannot_sign(
    user: uuid.UUID, value: Callable[[], str], caplog: pytest.LogCaptureFixture
) -> None:
    # Given an AWSCURRENT whose public key loads but whose private key cannot sign
    kid = rotate_secret(jwt_secret_id(), value())
    reset_identity_caches()
    # When the user signs in
    response = sign_in(EMAIL, PASSWORD)
    # Then the answer is 503 (a broken key, not the caller's fault, no 500), no token
    # is handed out that every verifier would refuse, and the log names the version
    assert response.status == 503, response.body
    assert "access_token" not in response.body
    logged = raw_log_text(caplog)
    assert "cannot sign access tokens" in logged
    assert kid in logged
    assert "BEGIN" not in logged


def _algorithm_as_a_list() -> str:
    pair = _pair()
    pair["algorithm"] = ["ES256"]
    return json.dumps(pair)


def _symmetric() -> str:
    return json.dumps({"algorithm": "HS256", "key": "k" * 64})  # pragma: allowlist secret


def _p384_pair() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP384R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pair = _pair()
    pair["public_key"] = public.decode("ascii")
    return json.dumps(pair)


MALFORMED = {
    "not JSON": lambda: f"{PEM_BEGIN} pasted without its JSON",
    "algorithm as a list": _algorithm_as_a_list,
    "symmetric algorithm": _symmetric,
    "key on another curve": _p384_pair,
    "bootstrap placeholder": lambda: json.dumps({"bootstrap": "x" * 32}),
}


@pytest.mark.parametrize("value", MALFORMED.values(), ids=list(MALFORMED))
def test_tokens_the_previous_key_signed_keep_working_while_awscurrent_is_malformed(
    user: uuid.UUID, value: Callable[[], str]
) -> None:
    """Before, a malformed AWSCURRENT failed every authenticated request with 503, and
    the JWKS too, although AWSPREVIOUS, the key that signed every live token, was fine.
    The malformed value signed nothing; only new sign-ins need a key it does not hold."""
    # Given a signed-in user, and then a malformed value pasted as AWSCURRENT
    signed_in = sign_in(EMAIL, PASSWORD)
    assert signed_in.status == 200
    token = signed_in.json()["access_token"]
    previous_kid = issue_access_token(user, "user").kid
    rotate_secret(jwt_secret_id(), value())
    reset_identity_caches()
    # When the user's token is used, and a relying party fetches the key set
    me = _me(token)
    jwks = call_api("GET", "/.well-known/jwks.json")
    # Then the token still opens the user's routes, the set publishes the key that
    # verifies it, and only a new sign-in is refused (503: nothing can sign)
    assert me.status == 200, me.body
    assert me.json()["user_id"] == str(user)
    assert jwks.status == 200, jwks.body
    assert [key["kid"] for key in jwks.json()["keys"]] == [previous_kid]
    assert sign_in(EMAIL, PASSWORD).status == 503


def test_with_no_usable_key_at_all_the_api_answers_503_not_401(user: uuid.UUID) -> None:
    """Nothing verifies: a broken secret, which clients should wait out (503), not a
    token they should throw away (401)."""
    signed_in = sign_in(EMAIL, PASSWORD)
    token = signed_in.json()["access_token"]
    rotate_secret(jwt_secret_id(), "not JSON")
    retire_previous(jwt_secret_id())
    reset_identity_caches()
    assert _me(token).status == 503
    assert call_api("GET", "/.well-known/jwks.json").status == 503
    assert sign_in(EMAIL, PASSWORD).status == 503
