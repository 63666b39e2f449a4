"""Every known JWT attack, sent to the API, is answered 401 (the issue's attack table).

The route is GET /auth/me, which needs a JWT; every attack is refused before the
account is read, so no database is needed: what is under test is the authentication
edge, end to end through the Lambda handler. A genuine token is accepted in
tests/integration/identity/test_tokens_of_changed_accounts.py, against its account.
"""

from __future__ import annotations

import time
import uuid

import pytest

from functions.shared.identity.tokens import issue_access_token
from tests.support.api import call_api
from tests.support.identity import (
    access_claims,
    b64url,
    create_jwt_secret,
    forge_token,
    hs256_with_public_key,
    rotate_jwt_secret,
    unsigned_token,
)
from tests.support.logs import json_log_lines

USER = "11111111-2222-4333-8444-555555555555"


@pytest.fixture
def kid(identity_env):
    return create_jwt_secret()


def me(token: str | None, scheme: str = "Bearer"):
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    return call_api("GET", "/auth/me", headers=headers)


def _attack(name: str, kid: str) -> str:
    now = int(time.time())
    good = access_claims(USER)
    forge = {
        "alg_none": lambda: unsigned_token({"alg": "none", "typ": "at+jwt", "kid": kid}, good),
        "hs256_signed_with_public_key": lambda: hs256_with_public_key(good, kid),
        "unknown_kid": lambda: forge_token(good, kid=str(uuid.uuid4())),
        "path_like_kid": lambda: forge_token(good, kid="../../../dev/null"),
        "jku_header": lambda: forge_token(
            good, kid=kid, extra_headers={"jku": "https://attacker.example/jwks.json"}
        ),
        "x5u_header": lambda: forge_token(
            good, kid=kid, extra_headers={"x5u": "https://attacker.example/cert.pem"}
        ),
        "expired": lambda: forge_token(access_claims(USER, iat=now - 3600, exp=now - 60), kid=kid),
        "not_yet_valid": lambda: forge_token(access_claims(USER, nbf=now + 3600), kid=kid),
        "wrong_issuer": lambda: forge_token(access_claims(USER, iss="https://evil"), kid=kid),
        "wrong_audience": lambda: forge_token(access_claims(USER, aud="other-api"), kid=kid),
        "missing_exp": lambda: forge_token(access_claims(USER, exp=None), kid=kid),
        "not_an_access_token": lambda: forge_token(access_claims(USER, typ="id"), kid=kid),
        "signature_stripped": lambda: forge_token(good, kid=kid).rsplit(".", 1)[0] + ".",
    }
    return forge[name]()


@pytest.mark.parametrize(
    "attack",
    [
        "alg_none",
        "hs256_signed_with_public_key",
        "unknown_kid",
        "path_like_kid",
        "jku_header",
        "x5u_header",
        "expired",
        "not_yet_valid",
        "wrong_issuer",
        "wrong_audience",
        "missing_exp",
        "not_an_access_token",
        "signature_stripped",
    ],
)
def test_attack_token_is_answered_401(kid, attack):
    # Given a token crafted for one attack
    token = _attack(attack, kid)
    # When it is sent to a route that needs a JWT
    response = me(token)
    # Then the answer is 401 with an invalid_token challenge and a generic message
    assert response.status == 401
    assert "invalid_token" in (response.header("WWW-Authenticate") or "")
    assert response.json()["error"]["code"] == "unauthorized"


def test_token_from_two_rotations_ago_is_refused_through_the_api(kid):
    token = issue_access_token(uuid.UUID(USER), "user").token
    rotate_jwt_secret()
    rotate_jwt_secret()
    from tests.support.identity import reset_identity_caches

    reset_identity_caches()
    assert me(token).status == 401


@pytest.mark.parametrize(
    ("token", "scheme"),
    [(None, "Bearer"), ("", "Bearer"), ("abc", "Basic"), ("abc def", "Bearer")],
)
def test_missing_or_malformed_authorization_is_401(kid, token, scheme):
    assert me(token, scheme).status == 401


def test_refusal_is_audited_with_reason_and_no_token(kid, caplog):
    token = _attack("wrong_audience", kid)
    me(token)
    lines = [line for line in json_log_lines(caplog) if line.get("audit")]
    assert lines, "a refusal must leave an audit line"
    assert lines[-1]["auth_event"] == "token_failed"
    assert lines[-1]["reason"] == "wrong_audience"
    assert lines[-1]["source_ip"] == "198.51.100.10"
    assert all(token not in str(line) for line in json_log_lines(caplog))


def test_refusal_emits_a_token_validation_metric(kid, capsys):
    me(_attack("expired", kid))
    emitted = capsys.readouterr().out
    assert "TokenValidationErrors" in emitted


def _deeply_nested_header_token() -> str:
    # 1,100 nested arrays: ~2.9 KB of header, under the 4 KB token limit
    nested = b"[" * 1100 + b"]" * 1100
    return f"{b64url(nested)}.{b64url(b'{}')}.{b64url(b'sig')}"


@pytest.mark.parametrize("path", ["/recalls", "/auth/me"])
def test_deeply_nested_header_is_an_audited_401_not_a_500(kid, path, caplog, capsys):
    # Given a token whose header nests deeper than the JSON parser's stack
    token = _deeply_nested_header_token()
    # When it is sent as a bearer token to a route that reads one
    response = call_api("GET", path, headers={"Authorization": f"Bearer {token}"})
    # Then it is refused as any malformed token is: 401, audited and counted
    assert response.status == 401
    assert "invalid_token" in (response.header("WWW-Authenticate") or "")
    lines = [line for line in json_log_lines(caplog) if line.get("audit")]
    assert lines, "a refusal must leave an audit line"
    assert lines[-1]["auth_event"] == "token_failed"
    assert lines[-1]["reason"] == "malformed"
    assert "TokenValidationErrors" in capsys.readouterr().out


def test_a_genuine_token_past_its_time_says_so(kid):
    """A client whose token ran out is told to sign in again (RFC 6750's
    error_description), not only "Authentication is required."."""
    now = int(time.time())
    token = forge_token(access_claims(USER, iat=now - 3600, exp=now - 60), kid=kid)

    response = me(token)

    assert response.status == 401
    challenge = response.header("WWW-Authenticate") or ""
    assert 'error="invalid_token"' in challenge
    assert 'error_description="The access token expired"' in challenge
    assert "sign in again" in response.json()["error"]["message"]


def test_an_expired_token_with_a_forged_signature_learns_nothing(kid):
    """The signature is checked before the time: a forger is told no more than for any
    other bad token."""
    now = int(time.time())
    genuine = forge_token(access_claims(USER, iat=now - 3600, exp=now - 60), kid=kid)
    header, payload, signature = genuine.split(".")
    tampered = f"{header}.{payload}.{signature[::-1]}"

    response = me(tampered)

    assert response.status == 401
    assert "expired" not in (response.header("WWW-Authenticate") or "")
    assert "expired" not in response.body
