"""The replay store's answer can be lost after DynamoDB applied the write (a dropped
connection, a read timeout, a 500 that still wrote). The client's retry then meets
its own claim: that is the claim succeeding, not a replay."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.identity.test_webhooks import post, signed_headers
from tests.support.aws_faults import DROP_ANSWER, AwsFaults, faulty_aws_endpoint, first_only
from tests.support.identity import recall_event


@pytest.fixture
def lossy_dynamodb(world, monkeypatch) -> Iterator[AwsFaults]:
    """The first webhook-id PutItem is applied by moto, its answer dropped."""
    with faulty_aws_endpoint(monkeypatch) as faults:
        faults.rule = first_only(
            lambda target, body: target.endswith(".PutItem") and b"webhook#" in body,
            DROP_ANSWER,
        )
        yield faults


def test_a_claim_whose_answer_was_lost_is_still_ours(world, lossy_dynamodb):
    # Given a delivery whose webhook-id claim is written but its answer lost
    body = recall_event()
    headers = signed_headers(world.webhook_secret, body, msg_id="msg_lost_answer")

    # When it is received
    response = post(body, headers)

    # Then the client's retry of the claim is not taken for a replay: stored once
    assert lossy_dynamodb.disturbed(DROP_ANSWER), "the proxy did not drop a claim's answer"
    assert response.status == 200, response.body
    assert world.recall_count() == 1
    # and a real replay of the same message is still refused
    assert post(body, headers).status == 409


def test_a_release_removes_only_its_own_claim(identity_env):
    import time

    from functions.shared.identity.webhooks import (
        VerifiedWebhook,
        WebhookReplayed,
        claim_message_id,
        release_message_id,
    )

    # Given an id that a later delivery holds (an earlier claim's record expired)
    now = time.time()
    message = VerifiedWebhook("msg_two_claims", int(now))
    earlier = claim_message_id(message, now=now)
    later = claim_message_id(message, now=now + 10_000)
    # When the earlier delivery fails and releases its claim
    release_message_id(message, earlier)
    # Then the later delivery's claim still stands
    with pytest.raises(WebhookReplayed):
        claim_message_id(message, now=now + 10_000)
    # and its own release frees the id
    release_message_id(message, later)
    claim_message_id(message, now=now + 10_000)
