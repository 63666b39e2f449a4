"""Detection and response: tables, topic, alarms, EventBridge wiring, secret-read alert."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match

from functions.shared import names
from functions.shared.inventory import INVENTORY
from tests.infrastructure.conftest import Synthesized


def _alarm(synthesized: Synthesized, name: str) -> dict[str, Any]:
    properties: dict[str, Any] = next(
        a["Properties"]
        for a in synthesized.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"]["AlarmName"] == name
    )
    return properties


def test_state_tables_have_ttl_pitr_and_kms(synthesized: Synthesized):
    tables = {
        t["Properties"]["TableName"]: t["Properties"]
        for t in synthesized.resources("AWS::DynamoDB::Table").values()
    }

    assert set(tables) == {
        names.RATE_LIMIT_TABLE,
        names.WEBHOOK_NONCE_TABLE,
        names.BLOCK_REGISTRY_TABLE,
        names.IDEMPOTENCY_TABLE,
    }
    for name, table in tables.items():
        assert table["TimeToLiveSpecification"]["Enabled"] is True, name
        assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], name
        assert table["SSESpecification"]["SSEType"] == "KMS", name
        assert table["DeletionProtectionEnabled"] is True, name
    assert tables[names.BLOCK_REGISTRY_TABLE]["TimeToLiveSpecification"]["AttributeName"] == (
        names.TTL_ATTRIBUTE
    )


def test_oncall_topic_is_encrypted(template: Any):
    template.has_resource_properties(
        "AWS::SNS::Topic", {"TopicName": names.ONCALL_TOPIC, "KmsMasterKeyId": Match.any_value()}
    )


def test_waf_blocked_alarm_defaults_to_100_per_5_minutes(synthesized: Synthesized):
    alarm = _alarm(synthesized, names.ALARM_WAF_BLOCKED)

    assert alarm["Threshold"] == 100
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    # Every rule's blocks but the auto-block rules': a blocked address that keeps
    # knocking is no new evidence (the responder's query leaves it out too)
    (expression,) = [m for m in alarm["Metrics"] if "Expression" in m]
    assert expression["Expression"] == "FILL(blocked, 0) - FILL(autov4, 0) - FILL(autov6, 0)"
    assert expression["ReturnData"] is True
    inputs = {m["Id"]: m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m}
    rules = {
        name: {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]}["Rule"]
        for name, stat in inputs.items()
    }
    assert rules == {
        "blocked": "ALL",
        "autov4": names.AUTO_BLOCK_RULE_V4,
        "autov6": names.AUTO_BLOCK_RULE_V6,
    }
    for stat in inputs.values():
        assert stat["Metric"]["Namespace"] == "AWS/WAFV2"
        assert stat["Metric"]["MetricName"] == "BlockedRequests"
        assert stat["Period"] == 300
        assert stat["Stat"] == "Sum"


def test_failed_sign_in_rotation_and_5xx_alarms_notify_oncall(synthesized: Synthesized):
    failed = _alarm(synthesized, names.ALARM_FAILED_SIGNINS)
    rotation = _alarm(synthesized, names.ALARM_ROTATION_FAILURES)
    server_errors = _alarm(synthesized, names.ALARM_API_5XX)

    assert failed["Namespace"] == names.METRICS_NAMESPACE
    assert failed["MetricName"] == names.METRIC_FAILED_SIGNINS
    assert {"Name": "service", "Value": "babyshield"} in failed["Dimensions"]
    assert names.METRIC_ROTATION_FAILURES in json.dumps(rotation["Metrics"])
    assert server_errors["MetricName"] == "5XXError"
    for alarm in (failed, rotation, server_errors):
        (action,) = alarm["AlarmActions"]
        assert action["Ref"].startswith("DetectionOnCall")


def test_a_refused_feed_delivery_pages_oncall_at_once(synthesized: Synthesized):
    """A signed delivery refused for its text is a recall not stored; one is enough."""
    alarm = _alarm(synthesized, names.ALARM_FEED_DELIVERY_REFUSED)

    assert alarm["Namespace"] == names.METRICS_NAMESPACE
    assert alarm["MetricName"] == names.METRIC_FEED_DELIVERIES_REFUSED
    assert {"Name": "service", "Value": "babyshield"} in alarm["Dimensions"]
    assert alarm["Threshold"] == 1
    assert alarm["TreatMissingData"] == "notBreaching"
    (action,) = alarm["AlarmActions"]
    assert action["Ref"].startswith("DetectionOnCall")


def test_alarm_state_changes_invoke_the_responder_with_retries_and_dlq(
    synthesized: Synthesized,
):
    rule = next(
        r["Properties"]
        for r in synthesized.resources("AWS::Events::Rule").values()
        if r["Properties"].get("Name") == names.WAF_ALARM_RULE
    )
    pattern = rule["EventPattern"]
    (target,) = rule["Targets"]

    assert pattern["source"] == ["aws.cloudwatch"]
    assert pattern["detail-type"] == ["CloudWatch Alarm State Change"]
    assert pattern["detail"] == {"state": {"value": ["ALARM"]}}
    assert len(pattern["resources"]) == 3
    assert target["Arn"]["Fn::GetAtt"][0].startswith("FunctionswafresponderFunction")
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 4
    assert target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0].startswith(
        "DetectionResponderDeadLetters"
    )


def test_expiry_sweep_runs_every_five_minutes(synthesized: Synthesized):
    rule = next(
        r["Properties"]
        for r in synthesized.resources("AWS::Events::Rule").values()
        if r["Properties"].get("Name") == names.WAF_SWEEP_RULE
    )
    (target,) = rule["Targets"]

    assert rule["ScheduleExpression"] == "rate(5 minutes)"
    assert target["Arn"]["Fn::GetAtt"][0].startswith("FunctionswafresponderFunction")
    assert "DeadLetterConfig" in target


def test_unexpected_secret_reads_alert_oncall(synthesized: Synthesized):
    rules = {
        r["Properties"]["Name"]: r["Properties"]
        for r in synthesized.resources("AWS::Events::Rule").values()
        if str(r["Properties"].get("Name", "")).startswith(names.SECRET_READ_RULE)
    }

    assert len(rules) == len(INVENTORY)
    rule = rules[f"{names.SECRET_READ_RULE}-db-app"]
    detail = rule["EventPattern"]["detail"]
    assert rule["EventPattern"]["detail-type"] == ["AWS API Call via CloudTrail"]
    assert detail["eventName"] == ["GetSecretValue"]
    readers = detail["$or"][0]["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"][0][
        "anything-but"
    ]
    reader_roles = {reader["Fn::GetAtt"][0] for reader in readers}
    assert any(role.startswith("FunctionsapiRole") for role in reader_roles)
    assert any(role.startswith("FunctionsrotatedbRole") for role in reader_roles)
    assert not any(role.startswith("FunctionswafresponderRole") for role in reader_roles)
    (target,) = rule["Targets"]
    assert target["Arn"]["Ref"].startswith("DetectionOnCall")
    # GetSecretValue is a read-only management event: plain ENABLED never matches it
    assert {r["State"] for r in rules.values()} == {"ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"}


def test_oncall_topic_takes_this_stacks_alarms_and_rules_only(synthesized: Synthesized):
    (policy,) = synthesized.resources("AWS::SNS::TopicPolicy").values()
    statements = {s.get("Sid"): s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    # The policy replaces SNS's default one: CloudWatch must be named to publish alarms
    alarms = statements["AlarmsOfThisStackPublish"]
    assert alarms["Effect"] == "Allow"
    assert alarms["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert ":alarm:babyshield-*" in json.dumps(alarms["Condition"]["ArnLike"])
    assert "aws:SourceAccount" in alarms["Condition"]["StringEquals"]
    # EventBridge may publish only for this stack's rules, whatever CDK's grant says
    deny = statements["OnlyThisStacksRulesPublish"]
    assert deny["Effect"] == "Deny"
    assert deny["Principal"] == {"Service": "events.amazonaws.com"}
    assert ":rule/babyshield-*" in json.dumps(deny["Condition"]["ArnNotLike"])


def test_trail_records_management_events_with_validation(template: Any):
    template.has_resource_properties(
        "AWS::CloudTrail::Trail",
        {
            "IsMultiRegionTrail": True,
            "EnableLogFileValidation": True,
            "KMSKeyId": Match.any_value(),
            "IsLogging": True,
        },
    )


def test_backup_plan_covers_the_database_and_tables(synthesized: Synthesized):
    (selection,) = synthesized.resources("AWS::Backup::BackupSelection").values()
    resources = json.dumps(selection["Properties"]["BackupSelection"]["Resources"])

    (database_id,) = synthesized.resources("AWS::RDS::DBInstance")
    assert database_id in resources
    for table_id in synthesized.resources("AWS::DynamoDB::Table"):
        assert table_id in resources


def test_a_responder_age_or_key_sweep_run_that_keeps_failing_lands_in_its_alarmed_queue(
    synthesized: Synthesized,
):
    """EventBridge's DLQ holds undelivered events only; Lambda's own retries of a
    delivered one end in the on-failure destination, else the event is dropped."""
    functions = {
        logical_id: f["Properties"]["FunctionName"]
        for logical_id, f in synthesized.resources("AWS::Lambda::Function").items()
        if "FunctionName" in f["Properties"]
    }
    queues = {
        logical_id: q["Properties"]["QueueName"]
        for logical_id, q in synthesized.resources("AWS::SQS::Queue").items()
    }
    routed = {
        functions[config["Properties"]["FunctionName"]["Ref"]]: queues[
            config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
        ]
        for config in synthesized.resources("AWS::Lambda::EventInvokeConfig").values()
    }
    assert routed == {
        names.function_name("waf_responder"): names.WAF_RESPONDER_DLQ,
        names.function_name("secret_age"): names.SECRET_AGE_DLQ,
        # Only its scheduled key sweep is invoked asynchronously.
        names.function_name("rotate_iam"): names.IAM_KEY_SWEEP_DLQ,
    }
    # ... and each of those queues, by name, has an alarm on what it holds.
    alarmed = {
        queues[dimension["Value"]["Fn::GetAtt"][0]]
        for a in synthesized.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
        for dimension in a["Properties"]["Dimensions"]
        if dimension["Name"] == "QueueName"
    }
    assert set(routed.values()) <= alarmed
