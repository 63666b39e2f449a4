"""JWT key-pair rotation through the real rotate_jwt handler, checked with the API's verifier."""

from __future__ import annotations

import uuid

import pytest

from functions.shared.identity.jwt_keys import JwtKeyStore
from functions.shared.identity.secret_versions import SecretVersionsCache
from functions.shared.identity.tokens import TokenRejected, issue_access_token, verify_access_token
from functions.shared.inventory import spec
from functions.shared.rotation.driver import LocalRotationDriver, seed_secret
from functions.shared.rotation.store import SecretStore
from tests.integration.rotation.state import current_value, jwt_keys, stages

NAME = "jwt-signing-key"


def _issue() -> str:
    return issue_access_token(uuid.uuid4(), "user", keys=jwt_keys()).token


def _verifies(token: str) -> bool:
    try:
        verify_access_token(token, keys=jwt_keys())
    except TokenRejected:
        return False
    return True


def test_tokens_issued_before_during_and_after_a_rotation_all_verify(
    store: SecretStore, jwt_secret: None
) -> None:
    """Protects zero downtime for sign-in: no token is refused because a key rotated."""
    from functions.rotate_jwt.handler import lambda_handler

    issued: dict[str, str] = {"before": _issue()}

    def issuing_between_steps(event, context):
        # A sign-in happening while this step runs.
        issued[f"during {event['Step']}"] = _issue()
        return lambda_handler(event, context)

    driver = LocalRotationDriver(store=store, handler=issuing_between_steps)
    result = driver.rotate(NAME)
    issued["after"] = _issue()

    refused = [moment for moment, token in issued.items() if not _verifies(token)]
    assert refused == []
    # The token issued after the rotation is signed by the new key (kid = its version).
    from jwt import get_unverified_header

    assert get_unverified_header(issued["after"])["kid"] == result.version_id
    assert get_unverified_header(issued["before"])["kid"] != result.version_id
    value = current_value(store, NAME)
    assert value["algorithm"] == "ES256"
    assert value["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert value["public_key"].startswith("-----BEGIN PUBLIC KEY-----")


def test_the_jwks_serves_both_live_keys_after_a_rotation(
    store: SecretStore, jwt_secret: None, driver: LocalRotationDriver
) -> None:
    """Protects clients that verify tokens themselves: the old kid stays published."""
    before = store.describe(spec(NAME).secret_name).version_with("AWSCURRENT")
    result = driver.rotate(NAME)
    kids = {key["kid"] for key in jwt_keys().key_ring().jwks()["keys"]}
    assert kids == {before, result.version_id}


def test_emergency_rotation_refuses_every_token_the_old_key_signed(
    store: SecretStore, jwt_secret: None, driver: LocalRotationDriver
) -> None:
    """Protects the leak response: a leaked signing key stops minting valid tokens at once."""
    # Given a token signed by the key that leaked
    old_token = _issue()
    # When an emergency rotation runs
    driver.rotate(NAME, emergency=True)
    # Then the old token is refused and a fresh one verifies
    assert not _verifies(old_token)
    assert _verifies(_issue())
    assert len(jwt_keys().key_ring().jwks()["keys"]) == 1
    assert not any("AWSPREVIOUS" in s for s in stages(store, NAME).values())


def test_a_bootstrap_placeholder_is_replaced_by_a_real_key_pair(store: SecretStore) -> None:
    """Protects the first deploy: CDK stores a placeholder that only rotation replaces."""
    seed_secret(store, spec(NAME), {"kind": "jwt-signing-key", "bootstrap": "x" * 32})
    LocalRotationDriver(store=store).rotate(NAME)
    assert _verifies(_issue())


class _ManualClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("after_load", [0.5, 2.0, 3.9])
def test_a_warm_instance_accepts_a_token_signed_right_after_a_rotation(
    store: SecretStore,
    jwt_secret: None,
    driver: LocalRotationDriver,
    monkeypatch: pytest.MonkeyPatch,
    after_load: float,
) -> None:
    """Protects zero downtime for sign-in: an instance that loaded its keys just before a
    rotation still accepts a token another instance signs with the new key."""
    from functions.shared.settings import get_settings

    # Given instance A, which loaded the keys (60 s cache) to sign a token just now
    monkeypatch.setenv("SECRET_CACHE_SECONDS", "60")
    get_settings.cache_clear()
    clock = _ManualClock()
    instance_a = JwtKeyStore(spec(NAME).secret_name, cache=SecretVersionsCache(clock=clock))
    issue_access_token(uuid.uuid4(), "user", keys=instance_a)
    # When the key rotates and instance B, starting cold, signs with the new key
    result = driver.rotate(NAME)
    token = _issue()
    from jwt import get_unverified_header

    assert get_unverified_header(token)["kid"] == result.version_id
    # Then instance A accepts it at once, not only after its last load is 5 s old
    clock.now += after_load
    verify_access_token(token, keys=instance_a)
