"""POST /webhooks/recalls: signed by any Standard Webhooks sender, upserted by
source_id, and every refused message leaves the database untouched."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from tests.support.api import call_api
from tests.support.identity import (
    recall_event,
    reset_identity_caches,
    retire_previous,
    rotate_webhook_secret,
    webhook_secret_id,
)

event = recall_event


def signed_headers(secret: str, body: bytes, msg_id: str | None = None, at: float | None = None):
    """What a sender built on the standardwebhooks reference library sends."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    moment = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, moment, body.decode()),
        "Content-Type": "application/json",
    }


def post(body: bytes, headers: dict[str, str]):
    return call_api("POST", "/webhooks/recalls", headers=headers, body=body)


def test_reference_library_signed_event_is_upserted(world):
    body = event()
    response = post(body, signed_headers(world.webhook_secret, body))
    assert response.status == 200
    assert response.json()["created"] is True
    rows = world.query("SELECT source_id, product, hazard FROM recalls")
    assert rows == [("CPSC-26-001", "Sleeper", "Suffocation")]


def test_the_largest_valid_recall_fits_the_default_body_limit(world):
    # Given the default body limit, the WAF's and the API's alike (cdk/config.py uses
    # the same constant; tests/infrastructure checks what the stack gives each)
    from functions.shared.settings import DEFAULT_MAX_BODY_BYTES

    limit = DEFAULT_MAX_BODY_BYTES
    # and a recall with every field at the longest the event model accepts
    body = event(
        source_id="C" * 100,
        product="p" * 500,
        brand="b" * 500,
        hazard="h" * 500,
        remedy="r" * 500,
        description="d" * 5000,
        country="c" * 64,
        url="https://" + "u" * 2040,
    )

    # When the feed delivers it
    response = post(body, signed_headers(world.webhook_secret, body))

    # Then it fits, with room to spare, and is stored
    assert len(body) < limit
    assert response.status == 200
    assert world.recall_count() == 1
    # while one byte past the limit is refused before anything parses it
    padded = body[:-1] + b" " * (limit - len(body) + 1) + b"}"
    refused = post(padded, signed_headers(world.webhook_secret, padded))
    assert refused.status == 413


def test_update_event_changes_the_existing_recall(world):
    first = event()
    post(first, signed_headers(world.webhook_secret, first))
    update = event(kind="recall.updated", remedy="Repair kit", url="https://recalls.example/x")
    response = post(update, signed_headers(world.webhook_secret, update))
    assert response.status == 200
    assert response.json()["created"] is False
    assert world.query("SELECT remedy, url FROM recalls") == [
        ("Repair kit", "https://recalls.example/x")
    ]


def test_tampered_body_is_refused_and_writes_nothing(world):
    body = event()
    headers = signed_headers(world.webhook_secret, body)
    tampered = body.replace(b"Refund", b"Ignore")
    response = post(tampered, headers)
    assert response.status == 401
    assert world.recall_count() == 0


def test_stale_timestamp_is_refused_and_writes_nothing(world):
    body = event()
    response = post(body, signed_headers(world.webhook_secret, body, at=time.time() - 301))
    assert response.status == 401
    assert world.recall_count() == 0


def test_reused_webhook_id_is_refused_and_writes_nothing_more(world):
    body = event()
    headers = signed_headers(world.webhook_secret, body, msg_id="msg_once")
    assert post(body, headers).status == 200
    world.execute("DELETE FROM recalls")
    # The exact same signed message replayed
    replay = post(body, headers)
    assert replay.status == 409
    assert world.recall_count() == 0


def test_previous_secret_works_during_rotation(world):
    old = world.webhook_secret
    rotate_webhook_secret()
    reset_identity_caches()
    body = event()
    assert post(body, signed_headers(old, body)).status == 200


def test_a_replay_signed_with_the_other_live_secret_is_still_a_replay(world):
    """During the overlap both versions verify; a retry signed with the other one is
    the same delivery (the replay record is the webhook-id), applied once."""
    old = world.webhook_secret
    new = rotate_webhook_secret()
    body = event("CPSC-26-777")
    first = post(body, signed_headers(old, body, msg_id="msg_either_secret"))
    second = post(body, signed_headers(new, body, msg_id="msg_either_secret"))
    assert (first.status, second.status) == (200, 409)
    assert world.recall_count() == 1


def test_retired_secret_is_refused_and_writes_nothing(world):
    old = world.webhook_secret
    new = rotate_webhook_secret()
    retire_previous(webhook_secret_id())
    reset_identity_caches()
    body = event()
    assert post(body, signed_headers(old, body)).status == 401
    assert world.recall_count() == 0
    assert post(body, signed_headers(new, body)).status == 200


def test_missing_signature_is_refused(world):
    body = event()
    response = post(body, {"Content-Type": "application/json"})
    assert response.status == 401
    assert world.recall_count() == 0


@pytest.mark.parametrize(
    "body",
    [
        b'{"type": "recall.deleted", "timestamp": "2026-01-01T00:00:00Z", "data": {}}',
        event(recall_date="not-a-date"),
        event(source_id="../../etc"),
        event(url="javascript:alert(1)"),
        event(extra_field="x"),
        b"not json",
    ],
)
def test_signed_but_invalid_event_is_4xx_and_writes_nothing(world, body):
    response = post(body, signed_headers(world.webhook_secret, body))
    assert 400 <= response.status < 500
    assert world.recall_count() == 0


def _with_timestamp(stamp: str) -> bytes:
    return json.dumps({**json.loads(event()), "timestamp": stamp}).encode()


def _days_from_today(days: int) -> str:
    return (datetime.now(UTC).date() + timedelta(days=days)).isoformat()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # Newest first: a recall dated in the future would head every search.
        (event(recall_date="2999-12-31"), "body.data.recall_date"),
        (lambda: event(recall_date=_days_from_today(2)), "body.data.recall_date"),
        (event(recall_date="0202-05-01"), "body.data.recall_date"),
        (event(recall_date="1899-12-31"), "body.data.recall_date"),
        # Numbers are not dates: pydantic alone would read them as Unix time
        (event(recall_date=1767225600), "body.data.recall_date"),
        (json.dumps({**json.loads(event()), "timestamp": 1764374400}).encode(), "body.timestamp"),
        (
            json.dumps({**json.loads(event()), "timestamp": "2026-01-15T10:00:00"}).encode(),
            "body.timestamp",
        ),
        # ... nor are numbers written as strings: the same answer quoted or not.
        (lambda: _with_timestamp(str(int(time.time()))), "body.timestamp"),
        (lambda: _with_timestamp(f"{time.time():.3f}"), "body.timestamp"),
    ],
)
def test_implausible_dates_are_422_naming_the_field(world, body, field):
    body = body() if callable(body) else body
    response = post(body, signed_headers(world.webhook_secret, body))
    assert response.status == 422
    assert response.json()["error"]["fields"] == [field]
    assert world.recall_count() == 0


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("product", '"crib\\u001b[31m"'),  # a terminal escape sequence
        ("hazard", '"Suffocation\\u0007"'),  # BEL
        ("brand", '"Acme\\u009b31m"'),  # the one-byte CSI of C1
        ("remedy", '"Refund\\u007f"'),  # DEL
        ("url", '"https://example.com/recall\\u0001"'),  # no URL holds a control
    ],
)
def test_recall_text_with_control_characters_is_422_and_writes_nothing(world, field, raw):
    """Recall text is served to every client of GET /recalls, and the text users send
    (searches, subscriptions) is refused with control characters in it: the feed's
    text gets the same answer, a 422 naming the field, and nothing is stored."""
    body = event(**{field: "PLACEHOLDER"}).replace(b'"PLACEHOLDER"', raw.encode())
    response = post(body, signed_headers(world.webhook_secret, body))
    assert response.status == 422, response.body
    assert response.json()["error"]["fields"] == [f"body.data.{field}"]
    assert world.recall_count() == 0


def test_recall_text_may_hold_line_breaks_and_tabs(world):
    """A remedy written over several lines is text, not a control sequence."""
    body = event(remedy="Stop using it.\n\tContact Acme for a refund.\r\n")
    assert post(body, signed_headers(world.webhook_secret, body)).status == 200
    assert world.recall_count() == 1


def test_a_feed_ahead_of_utc_may_send_tomorrow(world):
    body = event(recall_date=_days_from_today(1))
    response = post(body, signed_headers(world.webhook_secret, body))
    assert response.status == 200, response.body
    assert world.recall_count() == 1


def test_failed_upsert_releases_the_id_for_the_senders_retry(world, monkeypatch):
    from functions.api.recalls import queries

    body = event()
    headers = signed_headers(world.webhook_secret, body, msg_id="msg_retry")
    real = queries.upsert_recall

    def failing(conn, recall, occurred_at):
        from functions.shared.db import DatabaseUnavailable

        raise DatabaseUnavailable()

    monkeypatch.setattr(queries, "upsert_recall", failing)
    assert post(body, headers).status == 503
    assert world.recall_count() == 0
    monkeypatch.setattr(queries, "upsert_recall", real)
    assert post(body, headers).status == 200
    assert world.recall_count() == 1


def test_new_secret_is_accepted_by_a_warm_instance_right_after_rotation(world, caplog):
    # Given an instance that verified a webhook just before the secret rotated
    from tests.support.logs import json_log_lines

    first = event(source_id="CPSC-26-001")
    assert post(first, signed_headers(world.webhook_secret, first)).status == 200
    new = rotate_webhook_secret()
    # When the sender signs with the new secret (this instance's cache is still warm)
    body = event(source_id="CPSC-26-002")
    # Then the message is accepted at once, not a minute later
    assert post(body, signed_headers(new, body)).status == 200
    assert world.recall_count() == 2
    # And a forged message is refused and audited as before
    forged = event(source_id="CPSC-26-003")
    headers = signed_headers(world.webhook_secret, forged)
    headers["webhook-signature"] = signed_headers(new, event())["webhook-signature"]
    assert post(forged, headers).status == 401
    assert world.recall_count() == 2
    refusals = [
        line.get("reason")
        for line in json_log_lines(caplog)
        if line.get("auth_event") == "webhook_failed"
    ]
    assert refusals == ["bad_signature"]
