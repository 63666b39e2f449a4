"""Every 401 names a challenge (RFC 9110, 15.5.2), the one of the credential refused."""

from __future__ import annotations

from tests.integration.identity.conftest import world as world
from tests.support.api import call_api
from tests.support.identity import identity_env  # noqa: F401


def test_a_401_for_a_wrong_api_key_carries_a_challenge(world):
    """RFC 9110 (15.5.2): a 401 MUST carry WWW-Authenticate with at least one challenge.
    A refused bearer token gets one; a refused API key on /recalls must too, so a
    client can tell which credential to fix."""
    owner = world.create_user("partner@example.com")
    key = world.create_key(owner)
    answer = call_api("GET", "/recalls", headers={"X-API-Key": key[:-6] + "AAAAAA"})
    assert answer.status == 401
    assert answer.header("WWW-Authenticate")
    assert (answer.header("WWW-Authenticate") or "").startswith("ApiKey ")


def test_a_401_without_any_credential_asks_for_a_bearer_token(world):
    answer = call_api("GET", "/me/subscriptions")
    assert answer.status == 401
    assert answer.header("WWW-Authenticate") == 'Bearer realm="babyshield"'


def test_a_401_for_an_unsigned_webhook_names_the_signature(world):
    answer = call_api("POST", "/webhooks/recalls", json_body={"type": "recall.created"})
    assert answer.status == 401
    assert (answer.header("WWW-Authenticate") or "").startswith("Webhook-Signature ")
