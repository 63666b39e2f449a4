"""The sweep's recheck of alarms still in ALARM, with DescribeAlarms answered in-process."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from functions.shared import names
from functions.waf_responder import respond
from functions.waf_responder.events import Alarm, Sweep


def test_a_recheck_is_told_when_its_alarm_entered_alarm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rate-rule keys count again after an unblock once the alarm has cleared and fired
    since: the time it entered ALARM is StateTransitionedTimestamp, not
    StateUpdatedTimestamp (which also moves while the state stays), and unknown when
    DescribeAlarms does not say."""
    entered = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)

    class CloudWatch:
        def describe_alarms(self, **kwargs: Any) -> dict[str, Any]:
            now = datetime.now(UTC)
            return {
                "MetricAlarms": [
                    {
                        "AlarmName": names.ALARM_WAF_RATE,
                        "StateValue": "ALARM",
                        "StateTransitionedTimestamp": entered,
                        "StateUpdatedTimestamp": now,
                    },
                    {
                        "AlarmName": names.ALARM_WAF_BLOCKED,
                        "StateValue": "ALARM",
                        "StateUpdatedTimestamp": now,
                    },
                ]
            }

    looks: list[tuple[str, int | None]] = []

    def look(
        alarm: Alarm, event: dict[str, Any], context: Any, *, alarm_since: int | None = None
    ) -> dict[str, Any]:
        looks.append((alarm.name, alarm_since))
        return {"status": "unchanged"}

    monkeypatch.setattr(respond, "aws_client", lambda service: CloudWatch())
    monkeypatch.setattr(respond, "respond_once", look)

    respond.recheck_alarms(Sweep(event_id="sweep-1", at=datetime.now(UTC)), None)

    assert looks == [
        (names.ALARM_WAF_RATE, int(entered.timestamp())),
        (names.ALARM_WAF_BLOCKED, None),
    ]
