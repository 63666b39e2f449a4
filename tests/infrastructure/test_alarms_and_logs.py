"""Alarms that watch what the code emits (and page when a failure the code
survives persists), the API's execution log group, and the API's key grant."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from cdk.app import default_context
from functions.shared import names
from tests.infrastructure.conftest import REPO_ROOT, Synthesized

FUNCTIONS_DIR = REPO_ROOT / "functions"


def _emitted_metrics() -> dict[str, set[Path]]:
    """Metric name -> the modules that pass it to `metrics.add_metric`.

    A name counts when it is the call's literal `name=`, or a `names.METRIC_*`
    constant (or a literal) that a module calling add_metric mentions: the API's
    audit picks its metric from a table of those constants.
    """
    found: dict[str, set[Path]] = {}
    for path in FUNCTIONS_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        calls = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_metric"
        ]
        if not calls:
            continue
        mentioned: set[str] = set()
        for call in calls:
            for keyword in call.keywords:
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    mentioned.add(str(keyword.value.value))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "names"
                and node.attr.startswith("METRIC_")
                and hasattr(names, node.attr)
            ):
                mentioned.add(getattr(names, node.attr))
        for name in mentioned:
            found.setdefault(name, set()).add(path)
    return found


def _custom_alarms(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    """Alarm name -> properties, for alarms on the platform's own (EMF) metrics."""
    return {
        alarm["Properties"]["AlarmName"]: alarm["Properties"]
        for alarm in synthesized.resources("AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("Namespace") == names.METRICS_NAMESPACE
    }


def _alarm_on(synthesized: Synthesized, metric: str) -> dict[str, Any]:
    matching = [a for a in _custom_alarms(synthesized).values() if a["MetricName"] == metric]
    assert matching, f"no alarm watches {metric}"
    [alarm] = matching
    return alarm


def test_every_alarm_on_a_custom_metric_watches_one_the_code_emits(synthesized: Synthesized):
    """An alarm on a metric nobody emits, or on other dimensions, never fires."""
    emitted = _emitted_metrics()

    for name, alarm in _custom_alarms(synthesized).items():
        assert alarm["MetricName"] in emitted, f"{name}: {alarm['MetricName']} is never emitted"
        # Powertools adds `service` to every metric; only the secret-age run adds more.
        assert alarm["Dimensions"] == [{"Name": "service", "Value": names.METRICS_SERVICE}], name


@pytest.mark.parametrize(
    "metric",
    [
        # The per-key rate limiter lets requests through when DynamoDB cannot be asked.
        names.METRIC_RATE_LIMITER_UNAVAILABLE,
        # The sweep's recheck of an alarm still in ALARM fails without a retry or the DLQ.
        names.METRIC_WAF_RESPONDER_ERRORS,
    ],
)
def test_failures_the_code_survives_silently_page_oncall_when_they_persist(
    synthesized: Synthesized, metric: str
):
    assert metric in _emitted_metrics()
    alarm = _alarm_on(synthesized, metric)

    assert alarm["Statistic"] == "Sum"
    assert alarm["Period"] == 300
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    # Sustained, not a single blip that the next call survives.
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] > 1
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmName"].startswith(f"{names.PREFIX}-")  # the topic takes only these
    assert alarm["AlarmActions"] == [{"Ref": _oncall_topic(synthesized)}]


def test_overdue_or_unreported_secrets_page_oncall(synthesized: Synthesized):
    """SecretsOverdue is one datapoint per daily run: a count above zero, or days
    without a run at all (rule disabled, function gone), must reach on-call."""
    assert names.METRIC_SECRETS_OVERDUE in _emitted_metrics()
    alarm = _alarm_on(synthesized, names.METRIC_SECRETS_OVERDUE)

    assert alarm["Period"] == 86400
    assert alarm["Statistic"] == "Maximum"
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "breaching"
    # Two days: one late run, or a day that meets a rotation still in its window,
    # does not page; two days of overdue or of silence do.
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == 2
    assert alarm["AlarmName"].startswith(f"{names.PREFIX}-")
    assert alarm["AlarmActions"] == [{"Ref": _oncall_topic(synthesized)}]
    # The page covers three causes, each answered differently: it names the procedure.
    section = "A secret is overdue for rotation"
    assert f"(RUNBOOK, '{section}')" in alarm["AlarmDescription"]
    assert f"## {section}" in (REPO_ROOT / "docs" / "RUNBOOK.md").read_text()


@pytest.mark.parametrize(
    ("metric", "runbook_section"),
    [
        # The reminder to hand the feed its new secret.
        (names.METRIC_WEBHOOK_FEED_ON_PREVIOUS, "The webhook secret rotated"),
        # A rotation left unfinished for over an hour: an emergency's leaked value not
        # retired, or every later rotation of the secret refused.
        (names.METRIC_ROTATIONS_STUCK, "A rotation failed"),
        # Rotation switched off, stretched or re-pointed in the console: the secret
        # is fresh today and would be overdue only after its period.
        (names.METRIC_ROTATION_SETTINGS_DRIFT, "Rotation switched off or re-scheduled"),
    ],
)
def test_a_daily_reminder_pages_the_next_day(
    synthesized: Synthesized, metric: str, runbook_section: str
):
    """One daily datapoint of at least 1 pages. A day without one is the overdue
    alarm's (the run stopped), not this one's."""
    assert metric in _emitted_metrics()
    alarm = _alarm_on(synthesized, metric)

    assert alarm["Period"] == 86400
    assert alarm["Statistic"] == "Maximum"
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == 1
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmName"].startswith(f"{names.PREFIX}-")
    assert runbook_section in alarm["AlarmDescription"]
    assert f"## {runbook_section}" in (REPO_ROOT / "docs" / "RUNBOOK.md").read_text()
    assert alarm["AlarmActions"] == [{"Ref": _oncall_topic(synthesized)}]


def _oncall_topic(synthesized: Synthesized) -> str:
    [topic] = [
        logical_id
        for logical_id, topic in synthesized.resources("AWS::SNS::Topic").items()
        if topic["Properties"]["TopicName"] == names.ONCALL_TOPIC
    ]
    return topic


def test_api_gateway_execution_logs_go_to_a_retained_encrypted_group(synthesized: Synthesized):
    """Execution logging on the stage makes API Gateway create
    API-Gateway-Execution-Logs_<api id>/<stage> itself, never expiring and not
    encrypted, unless the group exists first."""
    [(stage_id, stage)] = synthesized.resources("AWS::ApiGateway::Stage").items()
    levels = {s.get("LoggingLevel", "OFF") for s in stage["Properties"]["MethodSettings"]}
    assert levels != {"OFF"}
    [rest_api_id] = synthesized.resources("AWS::ApiGateway::RestApi")
    expected_name = {
        "Fn::Join": [
            "",
            ["API-Gateway-Execution-Logs_", {"Ref": rest_api_id}, f"/{names.API_STAGE}"],
        ]
    }

    groups = {
        logical_id: group
        for logical_id, group in synthesized.resources("AWS::Logs::LogGroup").items()
        if group["Properties"].get("LogGroupName") == expected_name
    }
    assert len(groups) == 1, "no log group for the stage's execution logs"
    [(group_id, group)] = groups.items()
    assert group["Properties"]["RetentionInDays"] == 365
    assert "KmsKeyId" in group["Properties"]
    assert group["DeletionPolicy"] == "Retain"
    # The stage starts logging once it exists: the group must be there before.
    assert group_id in stage.get("DependsOn", []), stage_id


# What RDS names the group Enhanced Monitoring writes into: one per account and region,
# shared by every instance there, created by RDS through the monitoring role.
ENHANCED_MONITORING_LOG_GROUP = "RDSOSMetrics"
# Where the exception to "every log group: the retention and the key" is written down.
DOCUMENTS_NAMING_THE_EXCEPTION = (
    REPO_ROOT / "docs" / "INFRASTRUCTURE.md",
    REPO_ROOT / "docs" / "CLAIMS.md",
)


def test_every_log_group_is_retained_and_encrypted_but_rds_own_which_the_docs_name(
    synthesized: Synthesized,
):
    """Every group the stack declares keeps `logRetentionDays`, is encrypted with the
    platform key and outlives the stack. The one group the platform writes into
    without declaring it is RDS's `RDSOSMetrics` (Enhanced Monitoring): it serves
    every instance in the account and region, so the stack must not own it (its
    deploy would fail where another instance created it, and take it over where
    not). Its retention is RDS's and its encryption CloudWatch's; the documents name
    that exception exactly while Enhanced Monitoring is on, so that neither the
    template nor the documents drift from the other."""
    (key_id,) = synthesized.resources("AWS::KMS::Key")
    retention = default_context()["babyshield:logRetentionDays"]
    groups = synthesized.resources("AWS::Logs::LogGroup")
    assert groups

    off = {
        logical_id: {
            "RetentionInDays": group["Properties"].get("RetentionInDays"),
            "KmsKeyId": group["Properties"].get("KmsKeyId"),
            "DeletionPolicy": group.get("DeletionPolicy"),
        }
        for logical_id, group in groups.items()
        if group["Properties"].get("RetentionInDays") != retention
        or group["Properties"].get("KmsKeyId") != {"Fn::GetAtt": [key_id, "Arn"]}
        or group.get("DeletionPolicy") != "Retain"
    }
    assert off == {}, f"log groups without the retention, the key or Retain: {off}"
    declared = [group["Properties"].get("LogGroupName") for group in groups.values()]
    assert ENHANCED_MONITORING_LOG_GROUP not in declared, (
        "RDSOSMetrics is shared by every RDS instance in the account and region: "
        "the stack must not own it"
    )

    (instance,) = synthesized.resources("AWS::RDS::DBInstance").values()
    monitoring = int(instance["Properties"].get("MonitoringInterval", 0)) > 0
    for document in DOCUMENTS_NAMING_THE_EXCEPTION:
        named = ENHANCED_MONITORING_LOG_GROUP in document.read_text(encoding="utf-8")
        assert named == monitoring, (
            f"{document.relative_to(REPO_ROOT)} must name the RDSOSMetrics exception "
            "exactly while Enhanced Monitoring is on"
        )


def _function_key_grants(synthesized: Synthesized) -> dict[str, list[dict[str, Any]]]:
    """Function name -> the KMS statements of its role's policies."""
    roles = {
        function["Properties"]["Role"]["Fn::GetAtt"][0]: function["Properties"]["FunctionName"]
        for function in synthesized.resources("AWS::Lambda::Function").values()
        if str(function["Properties"].get("FunctionName", "")).startswith(f"{names.PREFIX}-")
    }
    grants: dict[str, list[dict[str, Any]]] = {name: [] for name in roles.values()}
    for policy in synthesized.resources("AWS::IAM::Policy").values():
        for role in policy["Properties"]["Roles"]:
            name = roles.get(role.get("Ref"))
            if name is None:
                continue
            grants[name] += [
                statement
                for statement in policy["Properties"]["PolicyDocument"]["Statement"]
                if statement["Effect"] == "Allow"
                and any(str(a).startswith("kms:") for a in _as_list(statement["Action"]))
            ]
    return grants


def test_no_function_may_use_the_platform_key_but_through_a_service(synthesized: Synthesized):
    """The key also encrypts every secret, queue and log group, and no function calls
    KMS itself: each grant is for DynamoDB's tables, SNS's topic or SQS's queues, so
    a grant without kms:ViaService would let a role's stolen credentials decrypt any
    ciphertext made under it."""
    region = default_context()["babyshield:region"]
    grants = _function_key_grants(synthesized)
    through = {
        name: {
            statement.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService")
            for statement in statements
        }
        for name, statements in grants.items()
        if statements
    }
    assert through == {
        names.function_name("api"): {f"dynamodb.{region}.amazonaws.com"},
        # The webhook secret's rotation reads which version the feed signs with, and
        # the key sweep's failed runs go to its dead-letter queue.
        names.function_name("rotate_iam"): {
            f"{service}.{region}.amazonaws.com" for service in ("dynamodb", "sqs")
        },
        names.function_name("waf_responder"): {
            f"{service}.{region}.amazonaws.com" for service in ("dynamodb", "sns", "sqs")
        },
        # Its dead-letter queue, and the feed's signer in the webhook-nonce table.
        names.function_name("secret_age"): {
            f"{service}.{region}.amazonaws.com" for service in ("dynamodb", "sqs")
        },
    }


def test_failed_asynchronous_runs_still_reach_their_dead_letter_queues(synthesized: Synthesized):
    """The send grant is ours (FailureQueue), so the destination must still name the queue."""
    queues = {
        queue["Properties"]["QueueName"]: logical_id
        for logical_id, queue in synthesized.resources("AWS::SQS::Queue").items()
    }
    destinations = {
        config["Properties"]["FunctionName"]["Ref"]: config["Properties"]["DestinationConfig"][
            "OnFailure"
        ]["Destination"]
        for config in synthesized.resources("AWS::Lambda::EventInvokeConfig").values()
    }
    functions = {
        function["Properties"]["FunctionName"]: logical_id
        for logical_id, function in synthesized.resources("AWS::Lambda::Function").items()
        if "FunctionName" in function["Properties"]
    }
    for package, queue_name in (
        ("waf_responder", names.WAF_RESPONDER_DLQ),
        ("secret_age", names.SECRET_AGE_DLQ),
        ("rotate_iam", names.IAM_KEY_SWEEP_DLQ),
    ):
        function_id = functions[names.function_name(package)]
        assert destinations[function_id] == {"Fn::GetAtt": [queues[queue_name], "Arn"]}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
