"""Standard Webhooks verification, checked against the spec's reference library."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from functions.shared.identity.secret_versions import (
    SecretVersion,
    SecretVersions,
    SecretVersionsCache,
)
from functions.shared.identity.webhooks import (
    VerifiedWebhook,
    WebhookRejected,
    WebhookReplayed,
    claim_message_id,
    decode_secret,
    generate_webhook_secret_value,
    live_webhook_keys,
    release_message_id,
    sign,
    verify_webhook,
)
from tests.support.identity import (
    create_webhook_secret,
    retire_previous,
    rotate_webhook_secret,
    webhook_secret_id,
)

BODY = json.dumps({"type": "recall.created", "data": {"source_id": "CPSC-1"}}).encode()
TOLERANCE = 300


def reference_headers(secret: str, body: bytes, msg_id: str = "msg_1", at: float | None = None):
    """Headers exactly as a sender built on the standardwebhooks library sends them."""
    timestamp = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    signature = Webhook(secret).sign(msg_id, timestamp, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
    }


@pytest.fixture
def secret():
    return json.loads(generate_webhook_secret_value())["secret"]


def test_message_signed_by_reference_library_is_accepted(secret):
    headers = reference_headers(secret, BODY)
    verified = verify_webhook(headers, BODY, [decode_secret(secret)], tolerance_seconds=TOLERANCE)
    assert verified.message_id == "msg_1"


def test_our_signature_is_accepted_by_the_reference_library(secret):
    # The ops sender and the verifier must agree with the spec, not just with each other.
    now = int(time.time())
    headers = {
        "webhook-id": "msg_2",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(decode_secret(secret), "msg_2", now, BODY),
    }
    Webhook(secret).verify(BODY, headers)


def test_header_names_are_case_insensitive(secret):
    headers = {k.title(): v for k, v in reference_headers(secret, BODY).items()}
    verify_webhook(headers, BODY, [decode_secret(secret)], tolerance_seconds=TOLERANCE)


def test_any_of_several_signatures_may_match(secret):
    # Given a sender mid-rotation that signs with an unknown secret and ours
    other = json.loads(generate_webhook_secret_value())["secret"]
    ours = reference_headers(secret, BODY)
    theirs = reference_headers(other, BODY)
    headers = dict(ours)
    headers["webhook-signature"] = (
        f"{theirs['webhook-signature']} v2,xyz {ours['webhook-signature']}"
    )
    # Then one match is enough
    verify_webhook(headers, BODY, [decode_secret(secret)], tolerance_seconds=TOLERANCE)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h, b: (h, b + b" "), "bad_signature"),
        (lambda h, b: (h, b.replace(b"CPSC-1", b"CPSC-2")), "bad_signature"),
        (lambda h, b: ({**h, "webhook-id": "msg_other"}, b), "bad_signature"),
        (
            lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}, b),
            "bad_signature",
        ),
        (
            lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),
            "missing_headers",
        ),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b), "missing_headers"),
        (lambda h, b: ({**h, "webhook-timestamp": "12.5"}, b), "invalid_timestamp"),
        (lambda h, b: ({**h, "webhook-id": "id with spaces"}, b), "invalid_id"),
        (lambda h, b: ({**h, "webhook-signature": "v1,***"}, b), "invalid_signature_header"),
        (
            lambda h, b: (
                {**h, "webhook-signature": h["webhook-signature"].replace("v1,", "v2,")},
                b,
            ),
            "invalid_signature_header",
        ),
    ],
)
def test_tampered_messages_are_refused(secret, mutate, reason):
    headers, body = mutate(reference_headers(secret, BODY), BODY)
    with pytest.raises(WebhookRejected) as refused:
        verify_webhook(headers, body, [decode_secret(secret)], tolerance_seconds=TOLERANCE)
    assert refused.value.reason == reason


@pytest.mark.parametrize("offset", [-301, 301, -86400])
def test_timestamps_outside_five_minutes_are_refused(secret, offset):
    # Given a correctly signed message whose timestamp is too old or too new
    headers = reference_headers(secret, BODY, at=time.time() + offset)
    with pytest.raises(WebhookRejected) as refused:
        verify_webhook(headers, BODY, [decode_secret(secret)], tolerance_seconds=TOLERANCE)
    assert refused.value.reason == "stale_timestamp"


def test_timestamps_inside_the_window_are_accepted(secret):
    for offset in (-290, 290):
        headers = reference_headers(secret, BODY, at=time.time() + offset)
        verify_webhook(headers, BODY, [decode_secret(secret)], tolerance_seconds=TOLERANCE)


def test_generated_secret_has_the_agreed_format():
    value = json.loads(generate_webhook_secret_value())
    assert set(value) == {"secret"}
    assert value["secret"].startswith("whsec_")
    assert len(decode_secret(value["secret"])) == 32


def test_current_and_previous_secrets_both_verify_during_rotation(identity_env):
    # Given a webhook secret that has rotated once
    old = create_webhook_secret()
    new = rotate_webhook_secret()
    keys = live_webhook_keys(SecretVersionsCache())
    # Then messages signed with either verify
    for secret in (old, new):
        verify_webhook(reference_headers(secret, BODY), BODY, keys, tolerance_seconds=TOLERANCE)


def test_retired_secret_is_refused_after_emergency_rotation(identity_env):
    # Given a rotation whose previous secret was then retired
    old = create_webhook_secret()
    rotate_webhook_secret()
    retire_previous(webhook_secret_id())
    keys = live_webhook_keys(SecretVersionsCache())
    # Then a message signed with the retired secret is refused
    with pytest.raises(WebhookRejected):
        verify_webhook(reference_headers(old, BODY), BODY, keys, tolerance_seconds=TOLERANCE)


def test_two_rotations_old_secret_is_refused(identity_env):
    old = create_webhook_secret()
    rotate_webhook_secret()
    rotate_webhook_secret()
    keys = live_webhook_keys(SecretVersionsCache())
    with pytest.raises(WebhookRejected):
        verify_webhook(reference_headers(old, BODY), BODY, keys, tolerance_seconds=TOLERANCE)


def test_message_id_can_be_claimed_once(identity_env):
    # Given a verified message
    message = VerifiedWebhook("msg_replay", int(time.time()))
    claim_message_id(message)
    # When the same id arrives again
    # Then it is a replay
    with pytest.raises(WebhookReplayed):
        claim_message_id(message)


def test_released_id_can_be_claimed_again(identity_env):
    # Given a message whose processing failed and released its id
    message = VerifiedWebhook("msg_retry", int(time.time()))
    claim = claim_message_id(message)
    release_message_id(message, claim)
    # Then the sender's retry is not taken for a replay
    claim_message_id(message)


def test_expired_claim_record_does_not_block_the_id(identity_env):
    # Given a record whose TTL passed but that DynamoDB has not swept yet
    now = time.time()
    message = VerifiedWebhook("msg_old", int(now))
    claim_message_id(message, now=now)
    # Then after the window it may be claimed (the timestamp check refuses real replays)
    claim_message_id(message, now=now + TOLERANCE + 120)


class _ManualClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class _RotatingSecret:
    """The webhook secret as a warm instance's loader sees it: rotatable, reads counted."""

    def __init__(self) -> None:
        self.secrets = [json.loads(generate_webhook_secret_value())["secret"]]
        self.loads = 0

    def rotate(self) -> str:
        self.secrets.append(json.loads(generate_webhook_secret_value())["secret"])
        return str(self.secrets[-1])

    def __call__(self, secret_id: str) -> SecretVersions:
        self.loads += 1
        version = len(self.secrets)
        current = SecretVersion(f"v{version}", json.dumps({"secret": self.secrets[-1]}))
        previous = None
        if version > 1:
            previous = SecretVersion(f"v{version - 1}", json.dumps({"secret": self.secrets[-2]}))
        return SecretVersions(current, previous)


def _warm_verifier() -> tuple[_RotatingSecret, _ManualClock, SecretVersionsCache]:
    """A verifier whose cache (60 s) was filled by the message it verified just now."""
    source, clock = _RotatingSecret(), _ManualClock()
    cache = SecretVersionsCache(loader=source, clock=clock)
    _verify(source.secrets[0], cache)
    assert source.loads == 1
    return source, clock, cache


def _verify(secret: str, cache: SecretVersionsCache) -> VerifiedWebhook:
    return verify_webhook(
        reference_headers(secret, BODY),
        BODY,
        lambda: live_webhook_keys(cache),
        tolerance_seconds=TOLERANCE,
    )


@pytest.mark.parametrize("after", [0.5, 10, 30, 59])
def test_a_warm_verifier_accepts_a_secret_rotated_in_after_its_cache_filled(after):
    """Protects zero downtime: no webhook signed with a newly rotated secret is refused."""
    # Given a verifier whose cache holds the secret as it was before a rotation
    source, clock, cache = _warm_verifier()
    new = source.rotate()
    clock.now += after
    # When a message signed with the new secret arrives
    # Then it is accepted after one early reload, and the old secret still verifies
    assert _verify(new, cache).message_id == "msg_1"
    assert _verify(source.secrets[0], cache).message_id == "msg_1"
    assert source.loads == 2


def test_forged_messages_cost_at_most_one_secret_read_per_interval():
    """Protects Secrets Manager: a flood of bad signatures cannot force a read per request."""
    # Given a warm verifier
    source, clock, cache = _warm_verifier()
    forged = json.loads(generate_webhook_secret_value())["secret"]
    # When forged messages arrive ten times a second for ten seconds
    for step in range(100):
        clock.now = 1000.5 + step * 0.1
        # Then every one is refused exactly as before
        with pytest.raises(WebhookRejected) as refused:
            _verify(forged, cache)
        assert refused.value.reason == "bad_signature"
    # And they cost one reload per 5 s, not one per message
    assert source.loads == 1 + 2


def test_a_message_that_still_fails_after_the_reload_is_refused():
    """Protects the refusal: a reload that brings a new secret does not weaken the check."""
    source, clock, cache = _warm_verifier()
    source.rotate()
    clock.now += 1
    forged = json.loads(generate_webhook_secret_value())["secret"]
    with pytest.raises(WebhookRejected) as refused:
        _verify(forged, cache)
    assert refused.value.reason == "bad_signature"
    # The reload happened, and a message signed with the new secret needs no other
    assert source.loads == 2
    _verify(source.secrets[-1], cache)
    assert source.loads == 2
