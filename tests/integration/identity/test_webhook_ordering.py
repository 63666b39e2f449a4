"""Feed deliveries arrive out of order (a sender retries a failed one later): the
event's own time decides which version of a recall is kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.integration.identity.test_webhooks import post, signed_headers
from tests.support.identity import recall_event


def _event(at: datetime | str, kind: str = "recall.updated", **data: str) -> bytes:
    document = json.loads(recall_event(kind=kind, **data))
    document["timestamp"] = at if isinstance(at, str) else at.isoformat()
    return json.dumps(document).encode()


def _deliver(world, body: bytes):
    return post(body, signed_headers(world.webhook_secret, body))


def test_a_late_retry_of_an_older_event_does_not_undo_a_newer_one(world):
    now = datetime.now(UTC)
    created = _deliver(world, _event(now - timedelta(hours=1), "recall.created", remedy="Refund"))
    newer = _deliver(world, _event(now - timedelta(minutes=1), remedy="Repair kit"))
    # The first update failed on its first delivery and the sender retries it now
    late = _deliver(world, _event(now - timedelta(minutes=30), remedy="Stop using"))

    assert created.status == newer.status == late.status == 200
    assert late.json()["created"] is False
    assert late.json()["recall_id"] == created.json()["recall_id"]
    assert world.query("SELECT remedy FROM recalls") == [("Repair kit",)]


def test_a_newer_event_still_replaces_the_stored_one(world):
    now = datetime.now(UTC)
    assert _deliver(world, _event(now - timedelta(minutes=5), remedy="Refund")).status == 200
    # Same instant written with another offset is not older: it applies too
    same = (now - timedelta(minutes=5)).astimezone(timezone(timedelta(hours=-5)))
    assert _deliver(world, _event(same, remedy="Refund or repair")).status == 200
    assert _deliver(world, _event(now, remedy="Repair kit")).status == 200
    assert world.query("SELECT remedy FROM recalls") == [("Repair kit",)]


@pytest.mark.parametrize(
    "at",
    [
        # Stored as the newest version, it would make every real update look stale.
        lambda: (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        lambda: "9999-12-31T23:59:59-05:00",
        # Python cannot move these to UTC: they must be a 422, not a 500.
        lambda: "0001-01-01T00:00:00+01:00",
        lambda: "1899-12-31T23:59:59Z",
    ],
)
def test_an_event_time_out_of_range_is_422_and_writes_nothing(world, at):
    response = _deliver(world, _event(at(), "recall.created"))
    assert response.status == 422
    assert response.json()["error"]["fields"] == ["body.timestamp"]
    assert world.recall_count() == 0


def test_a_stale_event_is_audited_as_not_applied(world, caplog):
    from tests.support.logs import json_log_lines

    now = datetime.now(UTC)
    assert _deliver(world, _event(now, "recall.created")).status == 200
    assert _deliver(world, _event(now - timedelta(minutes=1), remedy="Old")).status == 200
    applied = [
        line.get("applied")
        for line in json_log_lines(caplog)
        if line.get("auth_event") == "webhook_succeeded"
    ]
    assert applied == [True, False]
