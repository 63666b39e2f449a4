"""A webhook-id names one event. A delivery whose id was already taken by another
event (a feed bug reusing ids, or someone holding the leaked secret) was answered
"already received" like a replay and paged no one: the RUNBOOK's reason for the
silence, "its first delivery stored the recall", is false for it, so its recall
was lost without a trace. It is now refused with its own 409, logged without any
of its text, and counted as a refused feed delivery (the alarm that pages); a
lapsed lease is taken over only by the same event.

Real handler, PostgreSQL and the moto server. A delivery's signature covers its id
and body, so only a holder of the secret can send one of these: the page cannot
be raised by someone who merely saw a delivery on the wire.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from functions.shared import names
from tests.integration.identity.conftest import IdentityWorld
from tests.integration.identity.test_webhooks import post, signed_headers
from tests.support.identity import client, recall_event
from tests.support.logs import emf_metrics, json_log_lines, raw_log_text

# Text only the second event carries: it must never reach a log line.
MARKER = "Zq7-second-event-hazard"


def _pages(caplog, capsys) -> tuple[float | None, list[dict[str, object]]]:
    refused = [
        line for line in json_log_lines(caplog) if line.get("event") == "feed_delivery_refused"
    ]
    return emf_metrics(capsys.readouterr().out).get(names.METRIC_FEED_DELIVERIES_REFUSED), refused


def _stored(world: IdentityWorld, source_id: str) -> list[tuple[Any, ...]]:
    return world.query("SELECT hazard FROM recalls WHERE source_id = %s", (source_id,))


def test_a_received_id_sent_with_another_event_is_refused_and_pages(world, caplog, capsys):
    # Given a feed delivery that was stored
    first = recall_event(source_id="CPSC-REUSED", hazard="Tip-over")
    assert post(first, signed_headers(world.webhook_secret, first, msg_id="msg_r1")).status == 200
    capsys.readouterr()
    caplog.clear()

    # When another event arrives, correctly signed, under the same webhook-id
    other = recall_event(source_id="CPSC-REUSED", hazard=MARKER)
    answer = post(other, signed_headers(world.webhook_secret, other, msg_id="msg_r1"))

    # Then it is refused with a 409 that says why, and the stored recall is unchanged
    assert answer.status == 409, answer.body
    assert "different event" in answer.json()["error"]["message"]
    assert _stored(world, "CPSC-REUSED") == [("Tip-over",)]
    # and on-call is paged, with the id and the cause, never the event's text
    counted, refused = _pages(caplog, capsys)
    assert counted == 1
    assert [(line["webhook_id"], line["status"]) for line in refused] == [("msg_r1", 409)]
    assert refused[0]["reason"] == "webhook_id_reused"
    assert MARKER not in raw_log_text(caplog)


def test_a_replay_of_the_same_event_is_a_plain_replay_that_pages_no_one(world, caplog, capsys):
    # Given a stored delivery, and the same event sent again under its id (re-signed
    # later, and with its JSON laid out differently, as a sender's retry may be)
    first = recall_event(source_id="CPSC-SAME")
    assert post(first, signed_headers(world.webhook_secret, first, msg_id="msg_s1")).status == 200
    capsys.readouterr()
    caplog.clear()
    again = first.replace(b'", "', b'",  "')
    assert again != first
    answer = post(again, signed_headers(world.webhook_secret, again, msg_id="msg_s1"))

    # Then it is the replay it always was: 409 "already received", no page
    assert answer.status == 409, answer.body
    assert "already received" in answer.json()["error"]["message"]
    assert _pages(caplog, capsys) == (None, [])
    assert world.recall_count() == 1


def test_another_event_under_an_id_being_received_is_refused_as_reused(
    world, caplog, capsys, monkeypatch
):
    """The running delivery is another instance: accept_recall, what the route runs
    once the edge verified the signature (the resolver's state is one instance's)."""
    from functions.api.recalls import queries
    from functions.api.recalls.feed import RecallEvent, accept_recall
    from functions.shared.identity.webhooks import VerifiedWebhook

    # Given a delivery that claimed its id and is still storing its recall
    real = queries.upsert_recall
    storing, finish = threading.Event(), threading.Event()

    def slow(conn, recall, occurred_at):
        storing.set()
        assert finish.wait(20)
        return real(conn, recall, occurred_at)

    monkeypatch.setattr(queries, "upsert_recall", slow)
    first = RecallEvent.model_validate_json(
        recall_event(source_id="CPSC-RUNNING", hazard="Tip-over")
    )
    message = VerifiedWebhook("msg_run", int(time.time()))
    outcome: list[bool] = []
    running = threading.Thread(
        target=lambda: outcome.append(accept_recall(message, first, "192.0.2.7").created)
    )
    running.start()
    try:
        assert storing.wait(20)
        capsys.readouterr()
        caplog.clear()
        # When another event arrives under its id meanwhile
        other = recall_event(source_id="CPSC-RUNNING", hazard=MARKER)
        answer = post(other, signed_headers(world.webhook_secret, other, msg_id="msg_run"))
    finally:
        finish.set()
        running.join()

    # Then it is refused as a reused id (waiting out the lease would not help it)
    assert answer.status == 409, answer.body
    assert "different event" in answer.json()["error"]["message"]
    assert outcome == [True]
    assert _stored(world, "CPSC-RUNNING") == [("Tip-over",)]
    counted, _ = _pages(caplog, capsys)
    assert counted == 1


class Killed(BaseException):
    """Stands in for the function's timeout: nothing after it runs."""


def test_a_lapsed_lease_is_taken_over_only_by_the_same_event(world, monkeypatch):
    from functions.api.recalls import feed, queries

    # Given a delivery killed between its claim and its commit (no clean-up runs)
    real = queries.upsert_recall

    def killed(conn, recall, occurred_at):
        raise Killed

    monkeypatch.setattr(queries, "upsert_recall", killed)
    monkeypatch.setattr(feed, "_release_claim", lambda message, claim: None)
    first = recall_event(source_id="CPSC-KILLED", hazard="Tip-over")
    first_headers = signed_headers(world.webhook_secret, first, msg_id="msg_killed_1")
    with pytest.raises(Killed):
        post(first, first_headers)
    monkeypatch.setattr(queries, "upsert_recall", real)
    # whose lease has since run out
    client("dynamodb").update_item(
        TableName=names.WEBHOOK_NONCE_TABLE,
        Key={names.WEBHOOK_NONCE_PARTITION_KEY: {"S": "webhook#msg_killed_1"}},
        UpdateExpression="SET lease_until = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )

    # When another event arrives under that id, it is refused, not stored in its place
    other = recall_event(source_id="CPSC-KILLED", hazard=MARKER)
    answer = post(other, signed_headers(world.webhook_secret, other, msg_id="msg_killed_1"))
    assert answer.status == 409, answer.body
    assert "different event" in answer.json()["error"]["message"]
    assert world.recall_count() == 0

    # while the sender's retry of the killed delivery still takes the id over
    retry = post(first, signed_headers(world.webhook_secret, first, msg_id="msg_killed_1"))
    assert retry.status == 200, retry.body
    assert _stored(world, "CPSC-KILLED") == [("Tip-over",)]


def test_on_calls_own_id_reused_for_another_event_is_refused_without_a_page(world, caplog, capsys):
    """`babyshield webhook send --message-id` reused without --file sends a new event
    under the id: refused the same way, but it is on-call's own test (its ids are in
    the command's signed space), not the feed losing a recall."""
    from functions.shared.identity.webhook_signers import CLI_MESSAGE_ID_PREFIX

    msg_id = f"{CLI_MESSAGE_ID_PREFIX}msg_test"
    first = recall_event(source_id="ONCALL-REUSED")
    assert post(first, signed_headers(world.webhook_secret, first, msg_id=msg_id)).status == 200
    capsys.readouterr()
    caplog.clear()

    other = recall_event(source_id="ONCALL-REUSED", hazard=MARKER)
    answer = post(other, signed_headers(world.webhook_secret, other, msg_id=msg_id))

    assert answer.status == 409, answer.body
    assert "different event" in answer.json()["error"]["message"]
    assert _pages(caplog, capsys) == (None, [])
    assert MARKER not in raw_log_text(caplog)
