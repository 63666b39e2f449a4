"""A stored delivery replayed with an unsigned header changed is refused by the request
limits, before the replay check. Its signature still verifies, but its recall was
stored by the first delivery: the refusal pages no one (the alarm
`babyshield-feed-delivery-refused` means a recall not stored). A delivery the API has
not stored, refused the same way, still pages."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from functions.shared import names
from tests.integration.identity.test_webhooks import post, signed_headers
from tests.support.identity import recall_event
from tests.support.logs import emf_metrics, json_log_lines

Tamper = Callable[[dict[str, str]], dict[str, str]]

UNSIGNED_CHANGES: list[Tamper] = [
    # Content-Type is not signed: any other media type is a 415
    lambda headers: {**headers, "Content-Type": "text/plain"},
    # nor are extra headers: one past MAX_HEADER_BYTES is a 431
    lambda headers: {**headers, "X-Padding": "p" * 9000},
]
IDS = ["media-type-415", "header-431"]


def _refusals_counted(caplog, capsys) -> tuple[object, list[dict[str, object]]]:
    refused = [
        line for line in json_log_lines(caplog) if line.get("event") == "feed_delivery_refused"
    ]
    counted = emf_metrics(capsys.readouterr().out).get(names.METRIC_FEED_DELIVERIES_REFUSED)
    return counted, refused


@pytest.mark.parametrize("tamper", UNSIGNED_CHANGES, ids=IDS)
def test_a_stored_delivery_replayed_past_the_request_limits_pages_no_one(
    world, caplog, capsys, tamper
):
    """Headers are not signed: whoever saw one delivery could, for the whole tolerance
    window, replay it with another Content-Type or a padded header and page on-call
    as often as it liked, each page saying a recall was not stored when it was."""
    # Given a delivery the feed sent, stored
    body = recall_event(source_id="CPSC-REPLAYED")
    headers = signed_headers(world.webhook_secret, body, msg_id="msg_seen_on_the_wire")
    assert post(body, headers).status == 200
    assert world.recall_count() == 1
    capsys.readouterr()
    caplog.clear()

    # When someone who saw it replays it with an unsigned header changed
    replay = post(body, tamper(headers))

    # Then it is refused, nothing is stored twice
    assert replay.status in (415, 431), replay.body
    assert world.recall_count() == 1
    # and, being a replay of a stored delivery, it pages no one and names no lost recall
    assert _refusals_counted(caplog, capsys) == (None, [])


@pytest.mark.parametrize("tamper", UNSIGNED_CHANGES, ids=IDS)
def test_a_delivery_not_stored_refused_at_the_request_limits_still_pages(
    world, caplog, capsys, tamper
):
    """The replay check must not silence the feed's own refused delivery: its recall
    is not stored, and its every retry meets the same refusal."""
    body = recall_event(source_id="CPSC-NEVER-STORED")
    message_id = f"msg_{uuid.uuid4().hex}"
    headers = tamper(signed_headers(world.webhook_secret, body, msg_id=message_id))

    assert post(body, headers).status in (415, 431)

    counted, refused = _refusals_counted(caplog, capsys)
    assert counted == 1
    assert [line["webhook_id"] for line in refused] == [message_id]
    assert world.recall_count() == 0


def test_a_refused_delivery_pages_when_the_replay_store_cannot_be_read(
    world, caplog, capsys, monkeypatch
):
    """A replay store that cannot be asked must not silence a lost recall: the page
    may be for a replay, never missing for the feed's own delivery."""
    from tests.support.aws_faults import FAIL, PASS, faulty_aws_endpoint

    body = recall_event(source_id="CPSC-STORE-DOWN")
    headers = {
        **signed_headers(world.webhook_secret, body, msg_id=f"msg_{uuid.uuid4().hex}"),
        "Content-Type": "text/plain",
    }

    def replay_reads(target: str, _body: bytes) -> str:
        return FAIL if target.endswith(".GetItem") else PASS

    with faulty_aws_endpoint(monkeypatch) as faults:
        faults.rule = replay_reads
        assert post(body, headers).status == 415
    assert faults.disturbed(FAIL)
    counted, refused = _refusals_counted(caplog, capsys)
    assert (counted, len(refused)) == (1, 1)
