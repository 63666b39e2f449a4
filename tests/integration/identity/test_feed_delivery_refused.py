"""A delivery the recall feed signed, refused by attack inspection, is a recall the
API did not store, and every retry of the feed meets the same refusal: on-call hears
of it (the alarm `babyshield-feed-delivery-refused`), an attacker's refusal does not
page anyone."""

from __future__ import annotations

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
