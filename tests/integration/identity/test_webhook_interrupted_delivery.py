"""A delivery whose function is killed (its timeout, an out-of-memory) after it
claimed the webhook-id and before the recall was stored runs no clean-up: its
claim stays. The claim is a lease until the recall is stored, so the sender's
retry after the lease is the delivery again, not a replay refused until the claim
expires (which a sender that gives up sooner would turn into a lost recall)."""

from __future__ import annotations

import time

import pytest

from tests.integration.identity.test_webhooks import post, signed_headers
from tests.support.identity import recall_event


def _killed_delivery(msg_id: str, timestamp: int, *, seconds_ago: float) -> None:
    """What a delivery killed between its claim and its commit leaves behind."""
    from functions.shared.identity.webhooks import (
        WEBHOOK_LEASE_SECONDS,
        VerifiedWebhook,
        claim_message_id,
    )

    claim_message_id(
        VerifiedWebhook(msg_id, timestamp),
        now=time.time() - seconds_ago,
        lease_seconds=WEBHOOK_LEASE_SECONDS,
    )


def test_the_retry_after_a_killed_delivery_stores_the_recall(world):
    from functions.shared.identity.webhooks import WEBHOOK_LEASE_SECONDS

    # Given a delivery killed after its claim, longer than a lease ago
    body = recall_event()
    headers = signed_headers(world.webhook_secret, body, msg_id="msg_killed")
    _killed_delivery(
        "msg_killed", int(headers["webhook-timestamp"]), seconds_ago=WEBHOOK_LEASE_SECONDS + 1
    )

    # When the sender retries it
    response = post(body, headers)

    # Then the recall is stored
    assert response.status == 200, response.body
    assert world.recall_count() == 1
    # and the id is now received for good: a replay is refused
    replay = post(body, headers)
    assert replay.status == 409
    assert "already received" in replay.json()["error"]["message"]


def test_a_retry_while_the_first_delivery_may_still_run_is_told_when_to_come_back(world):
    from functions.shared.identity.webhooks import WEBHOOK_LEASE_SECONDS

    # Given a delivery that claimed its id a moment ago and has not stored its recall
    body = recall_event()
    headers = signed_headers(world.webhook_secret, body, msg_id="msg_running")
    _killed_delivery("msg_running", int(headers["webhook-timestamp"]), seconds_ago=1)

    # When the same delivery arrives again
    response = post(body, headers)

    # Then it is refused without storing anything, and the answer says when to retry
    assert response.status == 409
    message = response.json()["error"]["message"]
    assert "being received" in message
    assert f"{WEBHOOK_LEASE_SECONDS} seconds" in message
    assert world.recall_count() == 0


def test_a_stored_delivery_is_a_replay_after_its_lease_too(world):
    from functions.shared.identity.webhooks import (
        WEBHOOK_LEASE_SECONDS,
        VerifiedWebhook,
        WebhookInProgress,
        WebhookReplayed,
        claim_message_id,
    )

    # Given a delivery that was stored
    body = recall_event()
    headers = signed_headers(world.webhook_secret, body, msg_id="msg_stored")
    assert post(body, headers).status == 200

    # When the same id is claimed after the lease would have ended
    message = VerifiedWebhook("msg_stored", int(headers["webhook-timestamp"]))
    with pytest.raises(WebhookReplayed) as refused:
        claim_message_id(
            message,
            now=time.time() + WEBHOOK_LEASE_SECONDS + 1,
            lease_seconds=WEBHOOK_LEASE_SECONDS,
        )

    # Then it is refused as received, not as in progress
    assert not isinstance(refused.value, WebhookInProgress)
