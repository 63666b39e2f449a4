"""What the responder is invoked with, parsed and checked before anything acts.

Two event shapes are ours: EventBridge's "CloudWatch Alarm State Change" for one
of the configured alarms, and the scheduled expiry sweep. Anything else, or one
of ours with fields missing or of another shape (a metric list that is a number,
a period CloudWatch would not take, a time before any alarm could fire), becomes
`Rejected` with a reason fit for a log line (it names fields, never echoes their
content): nothing is acted on, and nothing fails to be retried into the
dead-letter queue.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
)

from functions.shared.settings import AlarmKind, get_settings

ALARM_DETAIL_TYPE = "CloudWatch Alarm State Change"
SCHEDULED_DETAIL_TYPE = "Scheduled Event"


# The longest alarm period the responder takes: it reads the offenders' records over
# at least one period (offenders.find_offenders), and a day is the most it can query
# within its timeout. Its alarms evaluate 5-minute periods (cdk/detection.py).
MAX_ALARM_PERIOD_SECONDS = 86_400
# No CloudWatch alarm fired before this; an earlier time would put the window the
# responder reads before 1970, which Logs Insights refuses.
EARLIEST_EVENT_TIME = datetime(2010, 1, 1, tzinfo=UTC)


def _alarm_period(seconds: int) -> int:
    """A period CloudWatch takes for an alarm (PutMetricAlarm: 10, 20, 30 or a multiple
    of 60), up to MAX_ALARM_PERIOD_SECONDS."""
    if seconds in (10, 20, 30) or (0 < seconds <= MAX_ALARM_PERIOD_SECONDS and seconds % 60 == 0):
        return seconds
    raise ValueError(
        f"not an alarm period: 10, 20, 30 or a multiple of 60 up to {MAX_ALARM_PERIOD_SECONDS}"
    )


def _event_time(when: datetime) -> datetime:
    if when < EARLIEST_EVENT_TIME:
        raise ValueError(f"earlier than {EARLIEST_EVENT_TIME:%Y-%m-%d}")
    return when


AlarmPeriod = Annotated[StrictInt, AfterValidator(_alarm_period)]
EventTime = Annotated[AwareDatetime, AfterValidator(_event_time)]
# EventBridge's ids are UUIDs. The id keys the responder's idempotency, names the
# blocks it makes (a registry item) and is printed in the undo command on-call
# pastes into a shell: short, and nothing a shell acts on.
EventId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]


class AlarmState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    value: Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
    reason: str = ""
    timestamp: EventTime


class MetricStat(BaseModel):
    model_config = ConfigDict(extra="ignore")

    period: AlarmPeriod | None = None


class MetricDataQuery(BaseModel):
    """One of `configuration.metrics`: a metric with its period, or an expression."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    metric_stat: MetricStat | None = Field(default=None, alias="metricStat")


class AlarmConfiguration(BaseModel):
    # A composite alarm's configuration has no metrics.
    model_config = ConfigDict(extra="ignore")

    metrics: list[MetricDataQuery] | None = None


class AlarmDetail(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    alarm_name: str = Field(alias="alarmName", min_length=1)
    state: AlarmState
    previous_state: AlarmState | None = Field(default=None, alias="previousState")
    configuration: AlarmConfiguration = Field(default_factory=AlarmConfiguration)

    def metric_period_seconds(self) -> int | None:
        """The longest metric period the alarm evaluates, when the event says."""
        periods = [
            metric.metric_stat.period
            for metric in self.configuration.metrics or []
            if metric.metric_stat is not None and metric.metric_stat.period is not None
        ]
        return max(periods) if periods else None


class AlarmStateChange(EventBridgeModel):
    # The id keys the responder's idempotency and names the blocks it makes.
    id: EventId
    source: Literal["aws.cloudwatch"]
    detail_type: Literal["CloudWatch Alarm State Change"] = Field(alias="detail-type")
    detail: AlarmDetail


class ScheduledEvent(EventBridgeModel):
    id: EventId
    source: Literal["aws.events", "aws.scheduler"]
    detail_type: Literal["Scheduled Event"] = Field(alias="detail-type")
    # The sweep's looks again read the window ending then.
    time: EventTime


@dataclass(frozen=True)
class Alarm:
    """An alarm state change for one of the responder's alarms."""

    event_id: str
    name: str
    kind: AlarmKind
    state: str
    reason: str
    at: datetime
    period_seconds: int | None
    # Found still in ALARM by the sweep, not announced by EventBridge: on-call hears
    # only of new blocks, not every five minutes that nothing changed.
    recheck: bool = False


@dataclass(frozen=True)
class Sweep:
    event_id: str
    at: datetime


@dataclass(frozen=True)
class Rejected:
    reason: str


ParsedEvent = Alarm | Sweep | Rejected


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 64 else text[:61] + "..."


def _validation_summary(error: ValidationError) -> str:
    fields = sorted({".".join(str(p) for p in e["loc"]) for e in error.errors()})
    return ", ".join(fields[:5])


def parse_event(event: object) -> ParsedEvent:
    """Classify an invocation: one of the configured alarms, the sweep, or rejected."""
    if not isinstance(event, dict):
        return Rejected("event is not a JSON object")
    source, detail_type = event.get("source"), event.get("detail-type")
    if source == "aws.cloudwatch" and detail_type == ALARM_DETAIL_TYPE:
        try:
            change = AlarmStateChange.model_validate(event)
        except ValidationError as exc:
            return Rejected(f"malformed alarm state change: invalid {_validation_summary(exc)}")
        name = change.detail.alarm_name
        kind = get_settings().waf_alarm_kinds.get(name)
        if kind is None:
            return Rejected(f"alarm {_short(name)} is not one the responder acts on")
        return Alarm(
            event_id=change.id,
            name=name,
            kind=kind,
            state=change.detail.state.value,
            reason=change.detail.state.reason,
            at=change.detail.state.timestamp,
            period_seconds=change.detail.metric_period_seconds(),
        )
    if source in ("aws.events", "aws.scheduler") and detail_type == SCHEDULED_DETAIL_TYPE:
        try:
            scheduled = ScheduledEvent.model_validate(event)
        except ValidationError as exc:
            return Rejected(f"malformed scheduled event: invalid {_validation_summary(exc)}")
        return Sweep(event_id=scheduled.id, at=scheduled.time)
    return Rejected(
        f"foreign event (source={_short(source)}, detail-type={_short(detail_type)}): "
        "expected a CloudWatch alarm state change or the scheduled sweep"
    )


def alarm_state_change_event(
    alarm_name: str,
    *,
    state: str = "ALARM",
    previous_state: str = "OK",
    reason: str = "Threshold Crossed",
    at: datetime | None = None,
    period_seconds: int = 300,
    event_id: str | None = None,
    account: str = "123456789012",
    region: str = "us-east-1",
) -> dict[str, Any]:
    """The event EventBridge delivers for an alarm transition (for the local stack and tests)."""
    when = (at or datetime.now(UTC)).astimezone(UTC)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}+0000"
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": ALARM_DETAIL_TYPE,
        "source": "aws.cloudwatch",
        "account": account,
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:cloudwatch:{region}:{account}:alarm:{alarm_name}"],
        "detail": {
            "alarmName": alarm_name,
            "state": {"value": state, "reason": reason, "timestamp": stamp},
            "previousState": {"value": previous_state, "reason": "", "timestamp": stamp},
            "configuration": {
                "metrics": [
                    {
                        "id": "m1",
                        "metricStat": {
                            "metric": {"namespace": "AWS/WAFV2", "name": "BlockedRequests"},
                            "period": period_seconds,
                            "stat": "Sum",
                        },
                        "returnData": True,
                    }
                ]
            },
        },
    }


def scheduled_sweep_event(
    *, at: datetime | None = None, rule_arn: str | None = None, event_id: str | None = None
) -> dict[str, Any]:
    """The event an EventBridge schedule delivers (for the local stack and tests)."""
    when = (at or datetime.now(UTC)).astimezone(UTC)
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": SCHEDULED_DETAIL_TYPE,
        "source": "aws.events",
        "account": "123456789012",
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [rule_arn or "arn:aws:events:us-east-1:123456789012:rule/sweep"],
        "detail": {},
    }
