"""The dashboards and the responder's alarm wiring read what the code writes.

Each test synthesizes the stack (the session's `synthesized` template) and holds a
widget or a rule to what a real code path emits: the rotation functions' log lines
(run through the local rotation driver on the moto server) and the events the
responder parses (functions/waf_responder/events.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from functions.shared import names
from functions.shared.inventory import INVENTORY
from tests.infrastructure.conftest import Synthesized

# What CloudWatch uses when a dashboard body names no time range or period override.
CLOUDWATCH_DEFAULT_RANGE = "-PT3H"
CLOUDWATCH_DEFAULT_PERIOD_OVERRIDE = "auto"
DAY = 86400


# --- reading the synthesized dashboards ----------------------------------------------


def _joined(value: Any) -> str:
    """A DashboardBody as CloudFormation renders it; a token becomes a plain word."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(p if isinstance(p, str) else "TOKEN" for p in parts)
    raise AssertionError(f"unexpected dashboard body {value!r}")


def _dashboard(synthesized: Synthesized, name: str) -> dict[str, Any]:
    [body] = [
        _joined(d["Properties"]["DashboardBody"])
        for d in synthesized.resources("AWS::CloudWatch::Dashboard").values()
        if d["Properties"]["DashboardName"] == name
    ]
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def _widget(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    [widget] = [w for w in dashboard["widgets"] if w["properties"].get("title") == title]
    found: dict[str, Any] = widget
    return found


_DURATION = re.compile(
    r"^-P(?:(?P<y>\d+)Y)?(?:(?P<mo>\d+)M)?(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<mi>\d+)M)?(?:(?P<s>\d+)S)?)?$"
)


def _relative_seconds(start: str) -> int:
    """`-PT3H` -> 10800: how far back a dashboard's relative `start` reaches."""
    match = _DURATION.match(start)
    assert match, f"not a relative time range: {start!r}"
    part = {k: int(v or 0) for k, v in match.groupdict().items()}
    return (
        part["y"] * 365 * DAY
        + part["mo"] * 30 * DAY
        + part["w"] * 7 * DAY
        + part["d"] * DAY
        + part["h"] * 3600
        + part["mi"] * 60
        + part["s"]
    )


def _range_seconds(dashboard: dict[str, Any], widget: dict[str, Any]) -> int:
    """The time range a widget shows when the dashboard opens: its own `start`,
    else the dashboard's, else CloudWatch's default of three hours."""
    start = widget["properties"].get("start") or dashboard.get("start") or CLOUDWATCH_DEFAULT_RANGE
    return _relative_seconds(start)


# --- reading a Logs Insights query -----------------------------------------------------

_CALL = re.compile(r"\b[A-Za-z_]+\(([^()]*)\)")
_ALIAS = re.compile(r"\bas\s+([A-Za-z_][\w.]*)")


def _query_fields(query: str) -> set[str]:
    """The log fields a query reads: its `fields` list, its `by` list and the
    arguments of its functions; not @-fields, not its own aliases."""
    referenced: set[str] = set()
    aliases = set(_ALIAS.findall(query))
    for command in re.split(r"\s*\|\s*", query):
        command = command.strip()
        if command.startswith("fields "):
            referenced.update(f.strip() for f in command[len("fields ") :].split(","))
        if " by " in command:
            referenced.update(f.strip() for f in command.split(" by ", 1)[1].split(","))
        for args in _CALL.findall(command):
            referenced.update(a.strip() for a in args.split(","))
    return {f for f in referenced if f and f != "*" and not f.startswith("@") and f not in aliases}


# --- 1. the rotation dashboard's log query -------------------------------------------


@pytest.fixture
def rotation_log_lines(aws: str, caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The JSON lines one real scheduled rotation (the webhook secret, through the
    rotate_iam handler that Secrets Manager invokes) writes to its log group."""

    from functions.shared.identity.webhooks import generate_webhook_secret_value
    from functions.shared.inventory import spec
    from functions.shared.rotation.driver import LocalRotationDriver, seed_secret
    from functions.shared.rotation.store import SecretStore
    from tests.support.aws import create_webhook_nonce_table
    from tests.support.logs import json_log_lines

    create_webhook_nonce_table()
    store = SecretStore(caller="test")
    value: dict[str, Any] = json.loads(generate_webhook_secret_value())
    value["kind"] = "generated"
    seed_secret(store, spec("webhook-signing-secret"), value)
    driver = LocalRotationDriver(store=store, backoff_seconds=0.0, sleep=lambda _: None)

    caplog.set_level("INFO")
    driver.rotate("webhook-signing-secret")
    return json_log_lines(caplog)


def test_rotation_dashboard_query_reads_fields_the_rotation_lines_carry(
    synthesized: Synthesized, rotation_log_lines: list[dict[str, Any]]
):
    """The rotation dashboard's "Last result per secret and step" table groups by the
    field each rotation step line names its secret in: with another name on-call would
    see one row per step with an empty secret and could not tell which one failed."""
    dashboard = _dashboard(synthesized, names.DASHBOARD_ROTATION)
    query = _widget(dashboard, "Last result per secret and step")["properties"]["query"]
    steps = [line for line in rotation_log_lines if "step" in line]
    assert [line["step"] for line in steps if line.get("message") == "rotation step"] == [
        "createSecret",
        "setSecret",
        "testSecret",
        "finishSecret",
    ]

    for field in sorted(_query_fields(query)):
        carrying = [line for line in steps if field in line]
        assert carrying == steps, (
            f"the rotation dashboard's query reads `{field}`, which "
            f"{len(steps) - len(carrying)} of {len(steps)} rotation step lines lack "
            f"(they carry {sorted(steps[0])})"
        )


# --- 2. what the rotation dashboard shows when it opens ------------------------------


@pytest.mark.parametrize(
    ("title", "needed_seconds", "why"),
    [
        (
            "Secret age (days) against its rotation period",
            DAY,
            "SecretAgeDays has one datapoint per daily secret-age run",
        ),
        (
            "Last result per secret and step",
            max(item.period_days for item in INVENTORY) * DAY,
            "each secret rotates once per its period (up to "
            f"{max(item.period_days for item in INVENTORY)} days)",
        ),
    ],
)
def test_rotation_dashboard_opens_on_a_range_that_holds_its_data(
    synthesized: Synthesized, title: str, needed_seconds: int, why: str
):
    """On CloudWatch's default of three hours the secret-age graph (one datapoint a
    day) and the last rotation result per secret (rotations every 30-90 days) would
    be empty nearly every time on-call opens the dashboard, though nothing is wrong."""
    dashboard = _dashboard(synthesized, names.DASHBOARD_ROTATION)
    widget = _widget(dashboard, title)

    shown = _range_seconds(dashboard, widget)
    assert shown >= needed_seconds, (
        f"{title!r} opens on the last {shown // 3600} h, but {why}: "
        f"it needs at least {needed_seconds // 3600} h to show anything"
    )


def test_rotations_in_the_last_24_hours_counts_24_hours(synthesized: Synthesized):
    """The "Rotations in the last 24 hours" single value covers the last day: with
    periods adapting to the dashboard's range (CloudWatch's `auto`) it would show the
    latest short bucket, and a rotation that failed this morning would read 0."""
    dashboard = _dashboard(synthesized, names.DASHBOARD_ROTATION)
    widget = _widget(dashboard, "Rotations in the last 24 hours")
    props = widget["properties"]
    shown = _range_seconds(dashboard, widget)
    override = dashboard.get("periodOverride", CLOUDWATCH_DEFAULT_PERIOD_OVERRIDE)

    if props.get("setPeriodToTimeRange"):
        covered: int | None = shown
    elif override == "inherit":
        # One bucket of the metric's period, starting at the range's start.
        periods = {m[-1].get("period", props.get("period", 300)) for m in props["metrics"]}
        covered = min(shown, *periods)
    else:
        covered = None  # the period follows the range: the value is the last short bucket
    assert covered == DAY, (
        f"the widget's value covers {covered} s (range {shown} s, periodOverride "
        f"{override}, setPeriodToTimeRange {props.get('setPeriodToTimeRange')}), not 24 hours"
    )


# --- 3. guard: the alarm rule's events are the ones the responder acts on -------------


def _pattern_matches(pattern: Any, value: Any) -> bool:
    """EventBridge matching for the pattern shapes the stack uses (lists of
    literals, nested objects)."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            key in value and _pattern_matches(sub, value[key]) for key, sub in pattern.items()
        )
    assert isinstance(pattern, list), pattern
    candidates = value if isinstance(value, list) else [value]
    return any(c in pattern for c in candidates)


def _alarm_event(alarm: dict[str, Any], arn: str, *, state: str = "ALARM") -> dict[str, Any]:
    """The "CloudWatch Alarm State Change" event CloudWatch sends for this alarm, with
    its configuration as CloudWatch writes it (metric math alarms list each metric)."""
    if "Metrics" in alarm:
        metrics = []
        for query in alarm["Metrics"]:
            entry: dict[str, Any] = {"id": query["Id"], "returnData": query["ReturnData"]}
            if "Expression" in query:
                entry["expression"] = query["Expression"]
                entry["label"] = query.get("Label", "")
            else:
                stat = query["MetricStat"]
                entry["metricStat"] = {
                    "metric": {
                        "namespace": stat["Metric"]["Namespace"],
                        "name": stat["Metric"]["MetricName"],
                        "dimensions": {
                            d["Name"]: str(d["Value"]) for d in stat["Metric"]["Dimensions"]
                        },
                    },
                    "period": stat["Period"],
                    "stat": stat["Stat"],
                }
            metrics.append(entry)
    else:
        metrics = [
            {
                "id": "m1",
                "metricStat": {
                    "metric": {
                        "namespace": alarm["Namespace"],
                        "name": alarm["MetricName"],
                        "dimensions": {d["Name"]: str(d["Value"]) for d in alarm["Dimensions"]},
                    },
                    "period": alarm["Period"],
                    "stat": alarm["Statistic"],
                },
                "returnData": True,
            }
        ]
    stamp = "2026-03-01T12:00:00.123+0000"
    return {
        "version": "0",
        "id": "0f3c8b52-5d4e-4b7d-9b0a-7c0f7d2b1a11",
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": "123456789012",
        "time": "2026-03-01T12:00:00Z",
        "region": "us-east-1",
        "resources": [arn],
        "detail": {
            "alarmName": alarm["AlarmName"],
            "state": {"value": state, "reason": "Threshold Crossed", "timestamp": stamp},
            "previousState": {"value": "OK", "reason": "", "timestamp": stamp},
            "configuration": {"description": alarm.get("AlarmDescription", ""), "metrics": metrics},
        },
    }


def test_every_alarm_the_rule_routes_is_one_the_responder_acts_on(synthesized: Synthesized):
    """An alarm routed to the responder whose events the parser rejected would fire
    with no block ever made; an alarm kind the parser knows but the rule never routes
    would never start the responder."""
    from functions.waf_responder.events import Alarm, parse_event

    [rule] = [
        r["Properties"]
        for r in synthesized.resources("AWS::Events::Rule").values()
        if r["Properties"].get("Name") == names.WAF_ALARM_RULE
    ]
    alarms = synthesized.resources("AWS::CloudWatch::Alarm")
    routed = {}
    for resource in rule["EventPattern"]["resources"]:
        logical_id, attribute = resource["Fn::GetAtt"]
        assert attribute == "Arn"
        alarm = alarms[logical_id]["Properties"]
        arn = f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{alarm['AlarmName']}"
        routed[alarm["AlarmName"]] = (alarm, arn)
    assert set(routed) == set(names.RESPONDER_ALARM_KINDS)

    for name, (alarm, arn) in routed.items():
        pattern = {**rule["EventPattern"], "resources": [arn]}
        event = _alarm_event(alarm, arn)
        assert _pattern_matches(pattern, event), name
        assert not _pattern_matches(pattern, _alarm_event(alarm, arn, state="OK")), name
        parsed = parse_event(event)
        assert isinstance(parsed, Alarm), (name, parsed)
        assert parsed.kind == names.RESPONDER_ALARM_KINDS[name]
        assert parsed.state == "ALARM"
        # The offender window is at least the alarm's own period.
        assert parsed.period_seconds == 300, name
