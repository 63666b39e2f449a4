"""The signed recall webhook probed as an attacker and as an unlucky sender, through
the real handler against PostgreSQL and the moto server.

The defect this file pins: when every attempt of the webhook-id claim lost its
answer (DynamoDB may have applied it), the delivery answered 503 and stored nothing,
yet its claim stayed, so the sender's prompt retry was told "being received" (409)
for a whole lease. The other tests hold edges no other file covers: concurrent
duplicates, API Gateway's base64 bodies, a BOM, a secret still AWSPENDING, header
forms a sender gets wrong, a signed delivery refused by the request limits.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from functions.shared import names
from functions.shared.identity.webhooks import decode_secret, sign
from ops.apigw import LocalLambdaContext, response_headers, rest_event
from tests.integration.identity.test_webhooks import post, signed_headers
from tests.support.api import ApiResponse
from tests.support.aws_faults import DROP_ANSWER, FAIL, PASS, faulty_aws_endpoint
from tests.support.identity import client, recall_event, webhook_secret_id
from tests.support.logs import emf_metrics

PATH = "/webhooks/recalls"


def _send(event: dict[str, Any]) -> ApiResponse:
    """One raw API Gateway event through the handler (for fields call_api does not set)."""
    from functions.api.handler import lambda_handler

    answer = lambda_handler(event, LocalLambdaContext())
    return ApiResponse(
        int(answer["statusCode"]), response_headers(answer), answer.get("body") or ""
    )


def _first_claims(action: str, count: int) -> Callable[[str, bytes], str]:
    """A fault rule: the first `count` webhook-id PutItems get `action`, nothing else."""
    hits: list[str] = []

    def rule(target: str, body: bytes) -> str:
        if target.endswith(".PutItem") and b"webhook#" in body and len(hits) < count:
            hits.append(target)
            return action
        return PASS

    return rule


@pytest.mark.parametrize("fault", [DROP_ANSWER, FAIL], ids=["applied-answer-lost", "not-applied"])
def test_a_claim_whose_every_attempt_failed_leaves_the_id_free_for_the_senders_retry(
    world, monkeypatch, fault
):
    from functions.shared.aws_clients import REQUEST

    body = recall_event(source_id="CPSC-LOST-CLAIM")
    headers = signed_headers(world.webhook_secret, body, msg_id="msg_claim_lost")
    with faulty_aws_endpoint(monkeypatch) as faults:
        # Given every attempt of the claim's put failing: applied by DynamoDB with the
        # answer lost, or refused before it was applied
        faults.rule = _first_claims(fault, REQUEST.max_attempts)

        # When the delivery arrives, the store's outcome unknown
        first = post(body, headers)
        # and the sender retries it at once, as a 503 invites
        retry = post(body, headers)
        # (and, once stored, replays it)
        replay = post(body, headers)

    # Then the first answer is a 503 and stores nothing
    assert len(faults.disturbed(fault)) == REQUEST.max_attempts
    assert first.status == 503, first.body
    # and the retry is the delivery, not "being received" by a delivery that ended
    assert retry.status == 200, retry.body
    assert world.query("SELECT source_id FROM recalls") == [("CPSC-LOST-CLAIM",)]
    # while a replay of the stored delivery is still refused
    assert replay.status == 409, replay.body


def test_releasing_a_claim_after_a_failure_is_one_short_attempt(world, monkeypatch):
    """After a claim that failed every attempt (up to REQUEST's worst case when each
    stalls), the release is one more call: on REQUEST's budget too, a DynamoDB that
    stalls would hold the delivery past the gateway's 29 s, a timeout instead of the
    503. It gets one attempt (CLEANUP); an id it fails to free is freed by its lease."""
    from functions.shared.aws_clients import CLEANUP, REQUEST

    body = recall_event(source_id="CPSC-RELEASE-BUDGET")
    headers = signed_headers(world.webhook_secret, body, msg_id="msg_release_budget")
    deletes: list[str] = []

    def rule(target: str, body: bytes) -> str:
        if target.endswith(".PutItem") and b"webhook#" in body:
            return FAIL
        if target.endswith(".DeleteItem") and b"webhook#" in body:
            deletes.append(target)
            return FAIL
        return PASS

    with faulty_aws_endpoint(monkeypatch) as faults:
        faults.rule = rule
        answer = post(body, headers)

    assert answer.status == 503, answer.body
    assert len(deletes) == CLEANUP.max_attempts == 1
    assert REQUEST.max_attempts > 1


def test_concurrent_duplicates_store_once_and_the_others_are_told_it_is_being_received(world):
    """Lambda runs one request per instance: each thread here is another instance
    taking the same delivery at once (accept_recall, what the route runs after the
    edge verified the signature; the resolver's per-request state is one instance's)."""
    from functions.api.recalls.feed import RecallEvent, accept_recall
    from functions.shared.errors import Conflict
    from functions.shared.identity.webhooks import VerifiedWebhook

    event = RecallEvent.model_validate_json(recall_event(source_id="CPSC-DUPLICATE"))
    message = VerifiedWebhook("msg_duplicate", int(time.time()))
    instances = 8
    start = threading.Barrier(instances)
    outcomes: list[str] = []

    def deliver() -> None:
        start.wait()
        try:
            accept_recall(message, event, "192.0.2.77")
            outcomes.append("stored")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=deliver) for _ in range(instances)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["conflict"] * (instances - 1) + ["stored"]
    assert world.recall_count() == 1


def test_a_body_api_gateway_sent_base64_encoded_verifies_over_its_bytes(world):
    # Given a delivery API Gateway passed on base64-encoded (a binary media type)
    body = recall_event(source_id="CPSC-BASE64")
    event = rest_event("POST", PATH, headers=signed_headers(world.webhook_secret, body), body=body)
    event["body"] = base64.b64encode(body).decode()
    event["isBase64Encoded"] = True
    # Then the signature over the bytes the sender sent verifies, and the recall is stored
    assert _send(event).status == 200
    assert world.recall_count() == 1
    # while one over the base64 text, which no sender signs, is refused
    encoded = event["body"].encode()
    event["multiValueHeaders"]["webhook-signature"] = [
        signed_headers(world.webhook_secret, encoded)["webhook-signature"]
    ]
    event["headers"]["webhook-signature"] = event["multiValueHeaders"]["webhook-signature"][0]
    assert _send(event).status == 401
    assert world.recall_count() == 1


def test_a_signed_body_with_a_byte_order_mark_is_refused_and_counted(world, capsys):
    # RFC 8259 8.1: a sender must not add one; the refusal is the feed's to fix
    body = b"\xef\xbb\xbf" + recall_event(source_id="CPSC-BOM")
    response = post(body, signed_headers(world.webhook_secret, body))
    assert response.status == 400
    assert response.json()["error"]["message"] == "The request body is not valid JSON."
    assert world.recall_count() == 0
    assert emf_metrics(capsys.readouterr().out)[names.METRIC_FEED_DELIVERIES_REFUSED] == 1


def test_a_delivery_signed_with_the_pending_secret_is_refused(world):
    """A rotation's AWSPENDING value is no secret of the feed's until it is AWSCURRENT:
    a sender that signs with it early (read mid-rotation) is refused, not accepted."""
    from functions.shared.identity.webhooks import generate_webhook_secret_value

    value = generate_webhook_secret_value()
    client("secretsmanager").put_secret_value(
        SecretId=webhook_secret_id(), SecretString=value, VersionStages=["AWSPENDING"]
    )
    body = recall_event(source_id="CPSC-PENDING")
    pending = json.loads(value)["secret"]
    assert post(body, signed_headers(pending, body)).status == 401
    assert world.recall_count() == 0
    assert post(body, signed_headers(world.webhook_secret, body)).status == 200


def _signed_pairs(secret: str, body: bytes) -> list[tuple[str, str]]:
    moment = int(time.time())
    return [
        ("Content-Type", "application/json"),
        ("webhook-id", "msg_forms"),
        ("webhook-timestamp", str(moment)),
        ("webhook-signature", sign(decode_secret(secret), "msg_forms", moment, body)),
    ]


def _replace(name: str, value: str) -> Callable[[list[tuple[str, str]]], list[tuple[str, str]]]:
    return lambda pairs: [(n, value if n == name else v) for n, v in pairs]


@pytest.mark.parametrize(
    "change",
    [
        _replace("webhook-timestamp", "-1"),
        _replace("webhook-timestamp", "1e9"),
        _replace("webhook-timestamp", "9" * 40),
        _replace("webhook-timestamp", str(int(time.time() * 1000))),  # milliseconds
        _replace("webhook-timestamp", "\u0661\u0667\u0660\u0660"),  # Arabic-Indic digits
        _replace("webhook-timestamp", f" {int(time.time())}"),
        _replace("webhook-id", "msg_\u00e9"),
        _replace("webhook-signature", "v1,\u00e9\u00e9\u00e9\u00e9"),
        _replace("webhook-signature", ""),
        # a second webhook-id line: API Gateway's single-value map keeps the last one
        lambda pairs: [*pairs, ("webhook-id", "msg_other")],
    ],
    ids=[
        "negative",
        "exponent",
        "huge",
        "milliseconds",
        "non-ascii-digits",
        "leading-space",
        "non-ascii-id",
        "non-ascii-signature",
        "empty-signature",
        "second-id-line",
    ],
)
def test_malformed_signing_headers_are_a_plain_401(world, caplog, change):
    body = recall_event(source_id="CPSC-FORMS")
    response = _send(
        rest_event(
            "POST", PATH, headers=change(_signed_pairs(world.webhook_secret, body)), body=body
        )
    )
    assert response.status == 401
    assert response.json()["error"]["message"] == "Authentication is required."
    assert response.header("WWW-Authenticate")
    assert response.header("Strict-Transport-Security")
    assert "Traceback" not in response.body
    assert world.webhook_secret not in caplog.text
    assert world.recall_count() == 0


def test_a_signed_delivery_too_large_to_take_is_counted_as_refused(world, capsys):
    """The request-limit guard runs before the signature is checked: a delivery the
    feed signed and the guard refused (413 here; 415, a body that is not UTF-8) was
    no refused delivery, so a recall was not stored and nobody was paged."""
    body = recall_event(source_id="CPSC-TOO-LARGE", description="d" * 17_000)
    response = post(body, signed_headers(world.webhook_secret, body))
    assert response.status == 413
    assert emf_metrics(capsys.readouterr().out).get(names.METRIC_FEED_DELIVERIES_REFUSED) == 1


def test_an_unsigned_delivery_too_large_to_take_pages_nobody(world, capsys):
    """Anyone can send an oversized body: only the feed's signature makes it a page."""
    body = recall_event(source_id="CPSC-TOO-LARGE-UNSIGNED", description="d" * 17_000)
    headers = signed_headers(world.webhook_secret, body)
    headers["webhook-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
    response = post(body, headers)
    assert response.status == 413
    assert names.METRIC_FEED_DELIVERIES_REFUSED not in emf_metrics(capsys.readouterr().out)
