"""GET /.well-known/jwks.json publishes exactly the live public keys."""

from __future__ import annotations

import jwt

from tests.support.api import call_api
from tests.support.identity import create_jwt_secret, reset_identity_caches, rotate_jwt_secret


def test_jwks_lists_current_then_previous_and_verifies_a_token(identity_env):
    # Given a key that rotated once
    old_kid = create_jwt_secret()
    from uuid import uuid4

    from functions.shared.identity.tokens import issue_access_token

    old_token = issue_access_token(uuid4(), "user").token
    new_kid = rotate_jwt_secret()
    reset_identity_caches()
    # When a relying party fetches the JWKS
    response = call_api("GET", "/.well-known/jwks.json")
    # Then both public keys are there, no private part, and the old key verifies old tokens
    assert response.status == 200
    keys = response.json()["keys"]
    assert [key["kid"] for key in keys] == [new_kid, old_kid]
    assert all("d" not in key for key in keys)
    jwk_set = jwt.PyJWKSet.from_dict(response.json())
    old_key = next(k for k in jwk_set.keys if k.key_id == old_kid)
    claims = jwt.decode(old_token, old_key.key, algorithms=["ES256"], options={"verify_aud": False})
    assert claims["typ"] == "access"


def test_jwks_without_the_secret_is_503_not_500(identity_env):
    response = call_api("GET", "/.well-known/jwks.json")
    assert response.status == 503


def test_the_key_set_follows_a_rotation_within_seconds_not_the_signing_cache(
    identity_env, monkeypatch
):
    """Right after a rotation another instance signs with the new key at once; a relying
    party that meets its kid refetches the set, which must hold it within seconds here,
    while this instance's signing cache keeps its versions for a minute."""
    from functions.api.identity.sign_in import JWKS_MAX_AGE_SECONDS
    from functions.shared.identity import jwt_keys
    from functions.shared.identity.secret_versions import SecretVersionsCache
    from functions.shared.settings import get_settings

    class Clock:
        now = 1000.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    old_kid = create_jwt_secret()
    secret_id = get_settings().jwt_secret_id
    store = jwt_keys.JwtKeyStore(secret_id, cache=SecretVersionsCache(clock=clock))
    monkeypatch.setitem(jwt_keys._stores, secret_id, store)
    # This instance is warm: it has published, and signs with, the old key
    assert [k["kid"] for k in call_api("GET", "/.well-known/jwks.json").json()["keys"]] == [old_kid]
    new_kid = rotate_jwt_secret()
    clock.now += JWKS_MAX_AGE_SECONDS + 0.1
    kids = [k["kid"] for k in call_api("GET", "/.well-known/jwks.json").json()["keys"]]
    assert kids == [new_kid, old_kid]
