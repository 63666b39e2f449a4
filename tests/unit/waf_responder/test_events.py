"""Event parsing: only our alarms and the sweep act; everything else is rejected by name."""

from __future__ import annotations

from functions.shared import names
from functions.waf_responder.events import (
    Alarm,
    Rejected,
    Sweep,
    alarm_state_change_event,
    parse_event,
    scheduled_sweep_event,
)


def test_configured_alarm_parses_with_its_kind_and_period() -> None:
    """Protects the mapping alarm name -> where offenders are looked for."""
    parsed = parse_event(alarm_state_change_event(names.ALARM_WAF_RATE, period_seconds=120))
    assert isinstance(parsed, Alarm)
    assert (parsed.kind, parsed.state, parsed.period_seconds) == ("waf-rate", "ALARM", 120)


def test_alarm_kinds_come_from_settings(monkeypatch) -> None:
    """Protects configurability: an operator can point another alarm at a kind."""
    monkeypatch.setenv("WAF_ALARM_KINDS", "custom-alarm=failed-sign-ins")
    parsed = parse_event(alarm_state_change_event("custom-alarm"))
    assert isinstance(parsed, Alarm)
    assert parsed.kind == "failed-sign-ins"
    assert isinstance(parse_event(alarm_state_change_event(names.ALARM_WAF_RATE)), Rejected)


def test_scheduled_event_is_the_sweep() -> None:
    assert isinstance(parse_event(scheduled_sweep_event()), Sweep)


def test_rejection_reason_names_fields_but_never_echoes_their_content() -> None:
    """Protects the logs: a hostile event's content is not copied into a log line."""
    event = alarm_state_change_event(names.ALARM_WAF_BLOCKED)
    event["detail"]["state"]["value"] = "<script>ALARM</script>"
    parsed = parse_event(event)
    assert isinstance(parsed, Rejected)
    assert "detail.state.value" in parsed.reason
    assert "<script>" not in parsed.reason


def test_foreign_source_is_rejected_with_a_short_reason() -> None:
    parsed = parse_event({"source": "x" * 500, "detail-type": "Scheduled Event"})
    assert isinstance(parsed, Rejected)
    assert parsed.reason.startswith("foreign event")
    assert len(parsed.reason) < 250


def test_an_event_without_an_id_is_rejected_by_name() -> None:
    """The id keys the responder's idempotency and names the blocks `waf unblock
    --event` undoes: without one an event is rejected, not failed inside Powertools
    (IdempotencyKeyError) and retried until it reaches the dead-letter queue."""
    for event in (alarm_state_change_event(names.ALARM_WAF_BLOCKED), scheduled_sweep_event()):
        event["id"] = ""
        parsed = parse_event(event)
        assert isinstance(parsed, Rejected), event["source"]
        assert parsed.reason.endswith("invalid id")


def test_every_period_cloudwatch_takes_up_to_a_day_parses() -> None:
    """The bound on the period refuses only what CloudWatch would not send: 10, 20, 30
    seconds (high resolution) and whole minutes up to a day are alarm periods."""
    for period in (10, 20, 30, 60, 300, 3600, 86_400):
        parsed = parse_event(
            alarm_state_change_event(names.ALARM_WAF_BLOCKED, period_seconds=period)
        )
        assert isinstance(parsed, Alarm), period
        assert parsed.period_seconds == period


def test_an_alarm_without_metrics_or_with_an_expression_has_no_period() -> None:
    """A composite alarm's configuration names no metrics; a metric-math alarm's
    expression carries no metricStat: the window is the offender window."""
    for metrics in (None, [], [{"id": "e1", "expression": "m1 * 2", "returnData": True}]):
        event = alarm_state_change_event(names.ALARM_WAF_BLOCKED)
        event["detail"]["configuration"] = {} if metrics is None else {"metrics": metrics}
        parsed = parse_event(event)
        assert isinstance(parsed, Alarm), metrics
        assert parsed.period_seconds is None
