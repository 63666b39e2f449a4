"""A delivery the recall feed signed, refused for what it holds (attack inspection, a
body that is not JSON, a recall the event model does not take), is a recall the API
did not store, and every retry of the feed meets the same refusal: on-call hears of
it (the alarm `babyshield-feed-delivery-refused`), an attacker's refusal does not
page anyone. A replay is no refusal: the first delivery stored its recall."""

from __future__ import annotations

import uuid

import pytest

from functions.shared import names
from tests.integration.identity.test_webhooks import post, signed_headers
from tests.support.identity import recall_event
from tests.support.logs import emf_metrics, json_log_lines

SCRIPTED = "<script>alert(1)</script> crib"


def test_a_signed_delivery_refused_for_its_text_is_counted_and_named(world, caplog, capsys):
    # Given a delivery the feed signed, whose description holds a script tag
    body = recall_event(description=SCRIPTED)
    headers = signed_headers(world.webhook_secret, body, msg_id="msg_refused_1")

    # When it arrives
    response = post(body, headers)

    # Then it is refused as any such input, and nothing is stored
    assert response.status == 400
    assert response.json()["error"]["code"] == "rejected_input"
    assert world.recall_count() == 0
    # And on-call's alarm counts it, with the delivery's id and never its text
    assert emf_metrics(capsys.readouterr().out)[names.METRIC_FEED_DELIVERIES_REFUSED] == 1
    lines = json_log_lines(caplog)
    (refused,) = [line for line in lines if line.get("event") == "feed_delivery_refused"]
    assert refused["level"] == "ERROR"
    assert refused["webhook_id"] == "msg_refused_1"
    assert "alert(1)" not in str(lines)
    # And the feed's retry is refused again, not taken for a replay of a stored one
    assert post(body, headers).status == 400


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "badly-signed"])
def test_an_attackers_refused_request_pages_no_one(world, capsys, signed):
    body = recall_event(description=SCRIPTED)
    headers = (
        signed_headers("whsec_" + "A" * 44, body)
        if signed
        else {"Content-Type": "application/json"}
    )
    response = post(body, headers)
    assert response.status == 401
    assert names.METRIC_FEED_DELIVERIES_REFUSED not in emf_metrics(capsys.readouterr().out)


def test_an_attack_on_a_search_pages_no_one(world, capsys):
    from tests.support.api import call_api

    assert call_api("GET", "/recalls", query="q=%3Cscript%3Ealert(1)%3C/script%3E").status == 400
    assert names.METRIC_FEED_DELIVERIES_REFUSED not in emf_metrics(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("body", "status", "problems"),
    [
        # The feed adds a field the model does not know yet
        (
            recall_event(source_id="CPSC-NEW-FIELD", lot_numbers="A1-A9"),
            422,
            [{"field": "body", "problem": "has a field this request does not take"}],
        ),
        # One character more description than the model takes
        (
            recall_event(source_id="CPSC-LONG", description="d" * 5001),
            422,
            [{"field": "body.data.description", "problem": "of the wrong length"}],
        ),
        # A body the API cannot read as JSON
        (b'{"type": "recall.created", "data": ', 400, []),
    ],
    ids=["new-field", "long-description", "not-json"],
)
def test_a_signed_delivery_the_api_cannot_take_is_counted_and_named(
    world, caplog, capsys, body, status, problems
):
    """A delivery the feed signed that the API cannot read, or whose recall fails the
    event model, is a recall not stored and refused again on every retry: on-call
    hears of it as of a refusal by attack inspection, with where it failed and never
    what it held."""
    headers = signed_headers(world.webhook_secret, body, msg_id=f"msg_{uuid.uuid4().hex}")

    response = post(body, headers)

    assert response.status == status
    assert world.recall_count() == 0
    assert emf_metrics(capsys.readouterr().out)[names.METRIC_FEED_DELIVERIES_REFUSED] == 1
    lines = json_log_lines(caplog)
    (refused,) = [line for line in lines if line.get("event") == "feed_delivery_refused"]
    assert (refused["level"], refused["webhook_id"], refused["status"]) == (
        "ERROR",
        headers["webhook-id"],
        status,
    )
    assert refused["problems"] == problems
    assert "A1-A9" not in str(lines)
    assert "d" * 100 not in str(lines)


def test_a_replayed_delivery_pages_no_one(world, capsys):
    """A replay's recall was stored by its first delivery: its 409 is no refusal."""
    body = recall_event(source_id="CPSC-ONCE")
    headers = signed_headers(world.webhook_secret, body, msg_id=f"msg_{uuid.uuid4().hex}")
    assert post(body, headers).status == 200
    capsys.readouterr()

    assert post(body, headers).status == 409
    assert names.METRIC_FEED_DELIVERIES_REFUSED not in emf_metrics(capsys.readouterr().out)
