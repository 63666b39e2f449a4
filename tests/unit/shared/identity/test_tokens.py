"""Access tokens against real key material in Secrets Manager (moto server).

Covers issuing, the two-live-keys rule across rotations, key caching, and each
attack the verifier must refuse, by reason.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from functions.shared.identity.jwt_keys import JwtKeyStore, generate_jwt_secret_value
from functions.shared.identity.secret_versions import SecretVersionsCache, load_secret_versions
from functions.shared.identity.tokens import TokenRejected, issue_access_token, verify_access_token
from tests.support.identity import (
    access_claims,
    b64url,
    create_jwt_secret,
    forge_token,
    hs256_with_public_key,
    jwt_secret_id,
    private_key_of,
    retire_previous,
    rotate_jwt_secret,
    unsigned_token,
)

USER = uuid.UUID("11111111-2222-4333-8444-555555555555")


class CountingLoader:
    def __init__(self):
        self.calls = 0

    def __call__(self, secret_id):
        self.calls += 1
        return load_secret_versions(secret_id)


class ManualClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def kid(identity_env):
    return create_jwt_secret()


def test_issued_token_verifies_with_its_claims(kid):
    # Given a key pair in Secrets Manager
    # When a token is issued for a user and verified
    issued = issue_access_token(USER, "admin")
    claims = verify_access_token(issued.token)
    # Then the claims round-trip and the kid names the AWSCURRENT version
    assert claims.subject == USER
    assert claims.role == "admin"
    assert claims.kid == kid
    assert issued.expires_in == 15 * 60
    assert claims.expires_at - claims.issued_at == 15 * 60


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_both_supported_algorithms_work(identity_env, algorithm):
    create_jwt_secret(algorithm)
    assert verify_access_token(issue_access_token(USER, "user").token).subject == USER


def test_token_signed_with_previous_key_is_accepted_after_rotation(kid):
    # Given a token signed before a rotation
    token = issue_access_token(USER, "user").token
    # When the key rotates (the old key becomes AWSPREVIOUS) and the cache expires
    new_kid = rotate_jwt_secret()
    store = JwtKeyStore(jwt_secret_id(), SecretVersionsCache())
    # Then the old token still verifies, and new tokens use the new key
    assert verify_access_token(token, keys=store).kid == kid
    assert issue_access_token(USER, "user", keys=store).kid == new_kid


def test_token_signed_with_key_two_rotations_old_is_refused(kid):
    # Given a token signed with a key that has since been rotated out twice
    token = issue_access_token(USER, "user").token
    rotate_jwt_secret()
    rotate_jwt_secret()
    store = JwtKeyStore(jwt_secret_id(), SecretVersionsCache())
    # Then it is refused: its key is neither AWSCURRENT nor AWSPREVIOUS
    with pytest.raises(TokenRejected) as refused:
        verify_access_token(token, keys=store)
    assert refused.value.reason == "unknown_kid"


def test_emergency_rotation_refuses_the_previous_key_at_once(kid):
    # Given a token of the current key, then a rotation that retires AWSPREVIOUS
    token = issue_access_token(USER, "user").token
    rotate_jwt_secret()
    retire_previous(jwt_secret_id())
    store = JwtKeyStore(jwt_secret_id(), SecretVersionsCache())
    with pytest.raises(TokenRejected) as refused:
        verify_access_token(token, keys=store)
    assert refused.value.reason == "unknown_kid"


def test_verification_uses_the_cache_not_one_secrets_manager_call_per_request(kid):
    # Given a store whose cache counts Secrets Manager loads
    loader = CountingLoader()
    store = JwtKeyStore(jwt_secret_id(), SecretVersionsCache(loader=loader))
    token = issue_access_token(USER, "user", keys=store).token
    # When many tokens are verified
    for _ in range(50):
        verify_access_token(token, keys=store)
    # Then the secret was read once
    assert loader.calls == 1


def test_new_key_from_another_instance_is_picked_up_without_restart(kid):
    # Given an instance that cached the key ring before a rotation
    clock = ManualClock()
    store = JwtKeyStore(jwt_secret_id(), SecretVersionsCache(clock=clock))
    store.key_ring()
    # When another instance signs with the rotated key
    rotate_jwt_secret()
    fresh = JwtKeyStore(jwt_secret_id(), SecretVersionsCache())
    token = issue_access_token(USER, "user", keys=fresh).token
    clock.now += 6  # past the minimum refresh interval, well inside the cache TTL
    # Then this instance reloads once on the unknown kid and accepts it
    assert verify_access_token(token, keys=store).subject == USER


def test_unknown_kids_cannot_force_a_reload_per_request(kid):
    # Given a store that counts Secrets Manager loads
    loader = CountingLoader()
    store = JwtKeyStore(jwt_secret_id(), SecretVersionsCache(loader=loader))
    # When a flood of tokens names a well-formed but unknown kid
    for _ in range(20):
        token = forge_token(access_claims(str(USER)), kid=str(uuid.uuid4()))
        with pytest.raises(TokenRejected):
            verify_access_token(token, keys=store)
    # Then at most the first load and one early refresh reach Secrets Manager
    assert loader.calls <= 2


def test_cache_expiry_picks_up_rotation(kid):
    clock = ManualClock()
    store = JwtKeyStore(jwt_secret_id(), SecretVersionsCache(clock=clock))
    assert store.key_ring().current.kid == kid
    new_kid = rotate_jwt_secret()
    clock.now += 61
    assert store.key_ring().current.kid == new_kid
    assert store.key_ring().previous.kid == kid  # type: ignore[union-attr]


def test_jwks_publishes_current_and_previous_public_keys_only(kid):
    new_kid = rotate_jwt_secret()
    store = JwtKeyStore(jwt_secret_id(), SecretVersionsCache())
    jwks = store.key_ring().jwks()
    assert [key["kid"] for key in jwks["keys"]] == [new_kid, kid]
    for key in jwks["keys"]:
        assert key["alg"] == "ES256"
        assert key["use"] == "sig"
        assert key["kty"] == "EC"
        assert "d" not in key  # no private part


def test_generated_secret_value_has_the_agreed_json_keys():
    import json

    value = json.loads(generate_jwt_secret_value())
    assert set(value) == {"algorithm", "private_key", "public_key"}
    assert value["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert value["public_key"].startswith("-----BEGIN PUBLIC KEY-----")


def attacks(kid):
    sub = str(USER)
    now = int(time.time())
    good = access_claims(sub)
    return {
        "alg_none": lambda: unsigned_token({"alg": "none", "typ": "at+jwt", "kid": kid}, good),
        "alg_none_uppercase": lambda: unsigned_token(
            {"alg": "NONE", "typ": "at+jwt", "kid": kid}, good
        ),
        "hs256_with_public_key": lambda: hs256_with_public_key(good, kid),
        "unknown_kid": lambda: forge_token(good, kid=str(uuid.uuid4())),
        "path_kid": lambda: forge_token(good, kid="../../etc/passwd"),
        "url_kid": lambda: forge_token(good, kid="https://evil.example/key"),
        "sql_kid": lambda: forge_token(good, kid="x' OR '1'='1"),
        "missing_kid": lambda: forge_token(good, kid=None),
        "jku_header": lambda: forge_token(
            good, kid=kid, extra_headers={"jku": "https://evil/jwks"}
        ),
        "x5u_header": lambda: forge_token(
            good, kid=kid, extra_headers={"x5u": "https://evil/cert"}
        ),
        "jwk_header": lambda: forge_token(good, kid=kid, extra_headers={"jwk": {"kty": "EC"}}),
        "expired": lambda: forge_token(access_claims(sub, exp=now - 120, iat=now - 600), kid=kid),
        "not_yet_valid": lambda: forge_token(access_claims(sub, nbf=now + 600), kid=kid),
        "issued_in_future": lambda: forge_token(access_claims(sub, iat=now + 600), kid=kid),
        "wrong_issuer": lambda: forge_token(
            access_claims(sub, iss="https://evil.example"), kid=kid
        ),
        "wrong_audience": lambda: forge_token(access_claims(sub, aud="another-api"), kid=kid),
        "missing_exp": lambda: forge_token(access_claims(sub, exp=None), kid=kid),
        "missing_iat": lambda: forge_token(access_claims(sub, iat=None), kid=kid),
        "missing_iss": lambda: forge_token(access_claims(sub, iss=None), kid=kid),
        "missing_aud": lambda: forge_token(access_claims(sub, aud=None), kid=kid),
        "missing_sub": lambda: forge_token(access_claims(sub, sub=None), kid=kid),
        "refresh_typ_claim": lambda: forge_token(access_claims(sub, typ="refresh"), kid=kid),
        "missing_typ_claim": lambda: forge_token(access_claims(sub, typ=None), kid=kid),
        "wrong_header_typ": lambda: forge_token(good, kid=kid, typ="JWT"),
        "unknown_role": lambda: forge_token(access_claims(sub, role="root"), kid=kid),
        "sub_not_a_user_id": lambda: forge_token(access_claims("admin"), kid=kid),
        "tampered_payload": lambda: _tamper(forge_token(good, kid=kid)),
        "garbage": lambda: "not.a.token",
        "jwe_shape": lambda: "a.b.c.d.e",
    }


def _tamper(token):
    import base64
    import json

    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize(
    "attack",
    [
        "alg_none",
        "alg_none_uppercase",
        "hs256_with_public_key",
        "unknown_kid",
        "path_kid",
        "url_kid",
        "sql_kid",
        "missing_kid",
        "jku_header",
        "x5u_header",
        "jwk_header",
        "expired",
        "not_yet_valid",
        "issued_in_future",
        "wrong_issuer",
        "wrong_audience",
        "missing_exp",
        "missing_iat",
        "missing_iss",
        "missing_aud",
        "missing_sub",
        "refresh_typ_claim",
        "missing_typ_claim",
        "wrong_header_typ",
        "unknown_role",
        "sub_not_a_user_id",
        "tampered_payload",
        "garbage",
        "jwe_shape",
    ],
)
def test_attack_tokens_are_refused(kid, attack):
    # Given a forged or invalid token of one kind
    token = attacks(kid)[attack]()
    # Then verification refuses it
    with pytest.raises(TokenRejected):
        verify_access_token(token)


def _deeply_nested(depth: int = 1100) -> bytes:
    """JSON that parses only with a deeper stack than the parser has: `[[[...]]]`."""
    return b"[" * depth + b"]" * depth


def test_deeply_nested_header_is_refused_as_malformed(kid):
    # Given a token whose header is 1,100 nested arrays (~2.9 KB, under the token limit)
    token = f"{b64url(_deeply_nested())}.{b64url(b'{}')}.{b64url(b'sig')}"
    # Then it is refused as malformed, not left to escape as a RecursionError
    with pytest.raises(TokenRejected) as refused:
        verify_access_token(token)
    assert refused.value.reason == "malformed"


def test_oversized_header_is_refused_before_it_is_decoded(kid):
    # Given a header that is valid JSON but longer than any header we issue
    header = {"alg": "ES256", "typ": "at+jwt", "kid": kid, "pad": "x" * 1024}
    token = forge_token(access_claims(str(USER)), kid=kid, extra_headers=header)
    # Then it is refused as malformed
    with pytest.raises(TokenRejected) as refused:
        verify_access_token(token)
    assert refused.value.reason == "malformed"


def test_signed_but_deeply_nested_payload_is_refused_as_malformed(kid):
    # Given a correctly signed token whose payload is deeply nested JSON (only a
    # holder of the signing key can build one; the verifier must still answer cleanly)
    import jwt

    header = b64url(json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": kid}).encode())
    signing_input = f"{header}.{b64url(_deeply_nested())}"
    algorithm = jwt.get_algorithm_by_name("ES256")
    signature = algorithm.sign(signing_input.encode(), private_key_of())
    # Then it is refused as malformed
    with pytest.raises(TokenRejected) as refused:
        verify_access_token(f"{signing_input}.{b64url(signature)}")
    assert refused.value.reason == "malformed"


def test_small_clock_skew_is_tolerated(kid):
    # Given a token issued by an instance whose clock runs 10 s ahead
    now = int(time.time())
    token = forge_token(access_claims(str(USER), iat=now + 10, nbf=now + 10), kid=kid)
    # Then it is accepted (leeway 30 s)
    assert verify_access_token(token).subject == USER
