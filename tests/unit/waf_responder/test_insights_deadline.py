"""A Logs Insights query that outlives its deadline is stopped, and the lookup fails.

moto completes every query the moment it starts, so a query that is still
running exists here only as a botocore Stubber answer on the responder's logs
client: the one state moto cannot produce. Everything else about the lookup
runs against moto in tests/integration/waf_responder.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

from functions.shared.aws_clients import new_client
from functions.waf_responder import offenders
from functions.waf_responder.offenders import OffenderLookupFailed, run_insights_query

LOG_GROUP = "aws-waf-logs-babyshield"
QUERY = "fields @timestamp, @message"


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """The responder's logs client, every answer stubbed; all of them must be used."""
    client = new_client("logs", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")
    monkeypatch.setattr(offenders, "_logs", lambda: client)
    monkeypatch.setattr(offenders, "POLL_INTERVAL_SECONDS", 0)
    with Stubber(client) as stubber:
        stubber.add_response(
            "start_query",
            {"queryId": "q-1"},
            {"logGroupName": LOG_GROUP, "startTime": 100, "endTime": 200, "queryString": QUERY},
        )
        yield stubber
        stubber.assert_no_pending_responses()


def _results(status: str, rows: list[list[dict[str, str]]] | None = None) -> dict[str, Any]:
    return {"status": status, "results": rows or []}


def test_a_query_still_running_at_its_deadline_is_stopped_and_the_lookup_fails(logs: Stubber):
    # Given a query that is still running when its deadline comes
    logs.add_response("get_query_results", _results("Running"), {"queryId": "q-1"})
    logs.add_response("stop_query", {"success": True}, {"queryId": "q-1"})

    # When the responder runs it with no time to wait, then the lookup fails by name
    with pytest.raises(OffenderLookupFailed, match=f"{LOG_GROUP} still running"):
        run_insights_query(LOG_GROUP, QUERY, 100, 200, deadline_seconds=0)
    # And the query was stopped (the fixture checks every stubbed call was made)


def test_a_failure_to_stop_the_query_does_not_hide_the_timeout(logs: Stubber):
    logs.add_response("get_query_results", _results("Running"), {"queryId": "q-1"})
    logs.add_client_error("stop_query", "InvalidParameterException", "already finished")

    with pytest.raises(OffenderLookupFailed, match="still running"):
        run_insights_query(LOG_GROUP, QUERY, 100, 200, deadline_seconds=0)


def test_a_query_that_ends_failed_is_not_stopped_and_fails_the_lookup(logs: Stubber):
    logs.add_response("get_query_results", _results("Failed"), {"queryId": "q-1"})

    with pytest.raises(OffenderLookupFailed, match="ended Failed"):
        run_insights_query(LOG_GROUP, QUERY, 100, 200, deadline_seconds=60)


def test_a_query_that_completes_within_its_deadline_returns_its_rows(logs: Stubber):
    # Given a query that runs for one poll, then completes with two rows
    row = [
        {"field": "@timestamp", "value": "2026-11-29 13:45:00.123"},
        {"field": "@message", "value": '{"action":"BLOCK"}'},
    ]
    epoch_row = [
        {"field": "@timestamp", "value": "1795970700000"},
        {"field": "@message", "value": "x"},
    ]
    logs.add_response("get_query_results", _results("Running"), {"queryId": "q-1"})
    logs.add_response(
        "get_query_results", _results("Complete", [row, epoch_row]), {"queryId": "q-1"}
    )

    # When it is run with time to spare, then both rows come back with epoch-ms stamps
    assert run_insights_query(LOG_GROUP, QUERY, 100, 200, deadline_seconds=60) == [
        ('{"action":"BLOCK"}', 1795959900123),
        ("x", 1795970700000),
    ]
