"""Secrets from the inventory, each rotated by its method on its period."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import Any

from cdk.app import default_context
from functions.shared import names
from functions.shared.inventory import INVENTORY
from tests.infrastructure.conftest import Synthesized

_FUNCTION_PREFIX = {
    "rotate_db": "FunctionsrotatedbFunction",
    "rotate_jwt": "FunctionsrotatejwtFunction",
    "rotate_iam": "FunctionsrotateiamFunction",
}
_ROLE_PREFIX = {
    "rotate_db": "FunctionsrotatedbRole",
    "rotate_jwt": "FunctionsrotatejwtRole",
    "rotate_iam": "FunctionsrotateiamRole",
}


def _secret_ids_by_name(synthesized: Synthesized) -> dict[str, str]:
    found = {}
    for logical_id, secret in synthesized.resources("AWS::SecretsManager::Secret").items():
        found[secret["Properties"]["Name"]] = logical_id
    attachments = synthesized.resources("AWS::SecretsManager::SecretTargetAttachment")
    for logical_id, attachment in attachments.items():
        secret_id = attachment["Properties"]["SecretId"]["Ref"]
        name = next(n for n, i in found.items() if i == secret_id)
        found[name] = logical_id
    return found


def test_every_inventory_secret_exists_encrypted_with_the_platform_key(
    synthesized: Synthesized,
):
    secrets = synthesized.resources("AWS::SecretsManager::Secret")
    by_name = {s["Properties"]["Name"]: s["Properties"] for s in secrets.values()}

    for spec in INVENTORY:
        assert spec.secret_name in by_name, spec.name
        assert "KmsKeyId" in by_name[spec.secret_name], spec.name


def test_every_secret_outlives_the_stack_like_the_key_and_the_final_snapshot(
    synthesized: Synthesized,
):
    """Deleting the stack keeps the key, the tables, the log groups and the IP sets, and
    leaves the database a final snapshot. A database restored from that snapshot has the
    logins whose passwords only the secrets hold (the master user's among them): a
    secret deleted with the stack would leave the restored database with no password
    anyone knows, a replacement for a stack update likewise."""
    secrets = synthesized.resources("AWS::SecretsManager::Secret")
    (db,) = synthesized.resources("AWS::RDS::DBInstance").values()
    (key,) = synthesized.resources("AWS::KMS::Key").values()
    assert db["DeletionPolicy"] == "Snapshot"
    assert key["DeletionPolicy"] == "Retain"

    by_name = {s["Properties"]["Name"]: s for s in secrets.values()}
    assert set(by_name) == {spec.secret_name for spec in INVENTORY}
    deleted = {
        name: (secret.get("DeletionPolicy"), secret.get("UpdateReplacePolicy"))
        for name, secret in by_name.items()
        if (secret.get("DeletionPolicy"), secret.get("UpdateReplacePolicy")) != ("Retain",) * 2
    }
    assert deleted == {}, f"deleted with the stack (DeletionPolicy, UpdateReplacePolicy): {deleted}"


def test_each_secret_rotates_with_its_method_on_its_period(synthesized: Synthesized):
    ids = _secret_ids_by_name(synthesized)
    schedules = {
        schedule["Properties"]["SecretId"]["Ref"]: schedule["Properties"]
        for schedule in synthesized.resources("AWS::SecretsManager::RotationSchedule").values()
    }

    for spec in INVENTORY:
        schedule = schedules[ids[spec.secret_name]]
        expression = schedule["RotationRules"]["ScheduleExpression"]
        assert expression == f"rate({spec.period_days} days)", spec.name
        function = schedule["RotationLambdaARN"]["Fn::GetAtt"][0]
        assert function.startswith(_FUNCTION_PREFIX[spec.method]), spec.name


def test_tier_secrets_name_the_admin_secret_for_multi_user_rotation(synthesized: Synthesized):
    secrets = synthesized.resources("AWS::SecretsManager::Secret")
    for name in ("babyshield/db-readonly", "babyshield/db-app"):
        properties = next(
            s["Properties"] for s in secrets.values() if s["Properties"]["Name"] == name
        )
        template = json.dumps(properties["GenerateSecretString"]["SecretStringTemplate"])
        assert "masterarn" in template, name


def test_tier_users_are_not_rotated_before_the_migration_creates_them(synthesized: Synthesized):
    ids = _secret_ids_by_name(synthesized)
    trigger_id = synthesized.trigger_running("migrate")
    schedules = synthesized.resources("AWS::SecretsManager::RotationSchedule").values()

    for name in ("babyshield/db-readonly", "babyshield/db-app"):
        schedule = next(s for s in schedules if s["Properties"]["SecretId"]["Ref"] == ids[name])
        assert trigger_id in schedule.get("DependsOn", []), name


def test_secrets_manager_may_invoke_rotation_only_for_this_account(synthesized: Synthesized):
    permissions = [
        p["Properties"]
        for p in synthesized.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "secretsmanager.amazonaws.com"
    ]

    assert len(permissions) == 3
    assert all(p["SourceAccount"] == {"Ref": "AWS::AccountId"} for p in permissions)


def _joined(value: Any, account: str) -> str:
    """A SourceArn as Lambda sees it at deploy time, with the account filled in."""
    if isinstance(value, str):
        return value
    parts = value["Fn::Join"][1]
    return "".join(
        part
        if isinstance(part, str)
        else {"AWS::AccountId": account, "AWS::Partition": "aws"}[part["Ref"]]
        for part in parts
    )


def test_secrets_manager_may_invoke_rotation_only_for_the_platforms_secrets(
    synthesized: Synthesized,
):
    """SourceAccount alone lets any secret of the account (another team's, or one
    made to reach the function) start a rotation function. Each permission names the
    platform's secrets by their name prefix; one pattern for all, as one function
    rotates several secrets through one permission. Lambda compares it with
    StringLike, and a secret's ARN ends in a random suffix after its name."""
    region = default_context()["babyshield:region"]
    account = "123456789012"
    permissions = [
        p["Properties"]
        for p in synthesized.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "secretsmanager.amazonaws.com"
    ]
    assert len(permissions) == 3

    def arn(name: str, *, in_account: str = account, in_region: str = region) -> str:
        return f"arn:aws:secretsmanager:{in_region}:{in_account}:secret:{name}-AbCdEf"

    for permission in permissions:
        pattern = _joined(permission["SourceArn"], account)
        for spec in INVENTORY:
            assert fnmatchcase(arn(spec.secret_name), pattern), (spec.name, pattern)
        for outsider in (
            arn("other-team/db-app"),
            arn("db-app"),
            arn(names.secret_name("db-app"), in_account="210987654321"),
            arn(names.secret_name("db-app"), in_region="eu-west-1"),
        ):
            assert not fnmatchcase(outsider, pattern), (outsider, pattern)


def test_rotate_iam_manages_keys_of_the_partner_user_only(synthesized: Synthesized):
    statements = _policy_statements(synthesized, "Functionsrotateiam")
    iam = [s for s in statements if any(str(a).startswith("iam:") for a in _list(s["Action"]))]

    assert len(iam) == 1
    assert iam[0]["Resource"] == {"Fn::GetAtt": [_user_id(synthesized), "Arn"]}


def _user_id(synthesized: Synthesized) -> str:
    (user_id,) = synthesized.resources("AWS::IAM::User")
    return user_id


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _policy_statements(synthesized: Synthesized, role_prefix: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in synthesized.resources("AWS::IAM::Policy").values()
        if any(r["Ref"].startswith(role_prefix) for r in policy["Properties"]["Roles"])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict[str, Any]) -> set[str]:
    return set(_list(statement["Action"]))


def test_rotators_may_remove_only_the_emergency_tag(synthesized: Synthesized):
    # An emergency rotation ends by removing its marker tag; nothing else may be untagged.
    for prefix in _ROLE_PREFIX.values():
        untag = [
            s
            for s in _policy_statements(synthesized, prefix)
            if "secretsmanager:UntagResource" in _actions(s)
        ]
        assert untag, prefix
        for statement in untag:
            condition = statement["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"]
            assert condition == ["babyshield:emergency-rotation"]


def test_secret_age_runs_daily_and_reads_metadata_only(synthesized: Synthesized):
    rules = synthesized.resources("AWS::Events::Rule")
    daily = next(
        r for r in rules.values() if r["Properties"].get("Name") == "babyshield-secret-age-daily"
    )
    assert daily["Properties"]["ScheduleExpression"] == "rate(1 day)"
    statements = _policy_statements(synthesized, "FunctionssecretageRole")
    actions = set().union(*(_actions(s) for s in statements))
    assert {"secretsmanager:DescribeSecret", "secretsmanager:ListSecretVersionIds"} <= actions
    assert "secretsmanager:GetSecretValue" not in actions


def test_secret_age_runs_at_deploy_before_its_overdue_alarm_exists(synthesized: Synthesized):
    """The daily rule first fires a day after the deploy, and the overdue alarm counts
    days without a run: the deploy runs the check itself, so a new stack does not page."""
    trigger_id = synthesized.trigger_running("secret_age")
    trigger = synthesized.resources("Custom::Trigger")[trigger_id]

    # Asynchronous: a failing check is retried and dead-lettered, never a failed deploy.
    # The trigger invokes the function's current version, and a version's invocations
    # take that version's configuration, not $LATEST's: it has its own on-failure queue.
    assert trigger["Properties"]["InvocationType"] == "Event"
    version_id = trigger["Properties"]["HandlerArn"]["Ref"]
    version = synthesized.resources("AWS::Lambda::Version")[version_id]["Properties"]
    function_ref = version["FunctionName"]
    qualifiers = {
        json.dumps(config["Properties"].get("Qualifier"), sort_keys=True)
        for config in synthesized.resources("AWS::Lambda::EventInvokeConfig").values()
        if config["Properties"]["FunctionName"] == function_ref
        and "OnFailure" in config["Properties"]["DestinationConfig"]
    }
    assert json.dumps({"Fn::GetAtt": [version_id, "Version"]}, sort_keys=True) in qualifiers
    assert json.dumps("$LATEST") in qualifiers
    # After every rotation schedule, so the tier users it reads about exist
    schedules = synthesized.resources("AWS::SecretsManager::RotationSchedule")
    assert len(schedules) == len(INVENTORY)
    assert set(schedules) <= set(trigger["DependsOn"])
    # And the alarm is created only once the check has been started
    overdue = next(
        alarm
        for alarm in synthesized.resources("AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("MetricName") == names.METRIC_SECRETS_OVERDUE
    )
    assert trigger_id in overdue["DependsOn"]
    # ... but that check is only queued then, and a new alarm is evaluated at once: with
    # no datapoint yet and missing days breaching, it would page. It waits out the time
    # the first datapoint takes (a retried invocation, the run, its EMF line).
    warm_up = overdue["Properties"].get("WarmUpConfiguration", {})
    assert warm_up.get("WarmUpPeriodDurationInMinutes", 0) >= 15


def test_secret_age_failures_reach_a_dead_letter_queue_that_alarms(synthesized: Synthesized):
    # Given the daily rule's only target, the secret-age function
    rules = synthesized.resources("AWS::Events::Rule")
    daily = next(
        r for r in rules.values() if r["Properties"].get("Name") == "babyshield-secret-age-daily"
    )
    (target,) = daily["Properties"]["Targets"]

    # Then a run that fails after its retries lands in its own encrypted queue
    queue_id = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
    queue = synthesized.resources("AWS::SQS::Queue")[queue_id]["Properties"]
    assert queue["QueueName"] == "babyshield-secret-age-dlq"
    assert "KmsMasterKeyId" in queue
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2

    # And a message in that queue alarms the on-call topic
    alarms = synthesized.resources("AWS::CloudWatch::Alarm").values()
    alarm = next(
        a["Properties"]
        for a in alarms
        if a["Properties"].get("AlarmName") == "babyshield-secret-age-dlq-not-empty"
    )
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}
    ]
    (oncall,) = (
        logical_id
        for logical_id, topic in synthesized.resources("AWS::SNS::Topic").items()
        if topic["Properties"].get("TopicName") == names.ONCALL_TOPIC
    )
    assert alarm["AlarmActions"] == [{"Ref": oncall}]


def test_previous_iam_keys_are_swept_daily_with_the_one_event_the_handler_takes(
    synthesized: Synthesized,
):
    """A routine rotation leaves the old access key active through its overlap window;
    this rule is what ends the window. Its input is exactly the event rotate_iam runs
    the sweep for: anything else would meet the rotation gate and be refused daily."""
    from functions.rotate_iam.key_sweep import SWEEP_EVENT, is_sweep_event

    rules = synthesized.resources("AWS::Events::Rule").values()
    (sweep,) = [r for r in rules if r["Properties"].get("Name") == names.IAM_KEY_SWEEP_RULE]
    assert sweep["Properties"]["ScheduleExpression"] == "rate(1 day)"
    (target,) = sweep["Properties"]["Targets"]
    function_id = target["Arn"]["Fn::GetAtt"][0]
    assert function_id.startswith(_FUNCTION_PREFIX["rotate_iam"])
    event = json.loads(target["Input"])
    assert event == dict(SWEEP_EVENT)
    assert is_sweep_event(event)

    # A run that fails is retried, then kept in its own encrypted queue...
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2
    queue_id = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
    queue = synthesized.resources("AWS::SQS::Queue")[queue_id]["Properties"]
    assert queue["QueueName"] == names.IAM_KEY_SWEEP_DLQ
    assert "KmsMasterKeyId" in queue
    # ...also when Lambda's own retries of a delivered run fail (asynchronous only:
    # Secrets Manager's rotation steps are synchronous, their failures its to retry)
    (invoke_config,) = [
        config["Properties"]
        for config in synthesized.resources("AWS::Lambda::EventInvokeConfig").values()
        if config["Properties"]["FunctionName"] == {"Ref": function_id}
    ]
    assert invoke_config["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": [queue_id, "Arn"]
    }
    assert invoke_config["MaximumRetryAttempts"] == 2
    # ...whose first message pages on-call
    (alarm,) = [
        a["Properties"]
        for a in synthesized.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("AlarmName") == f"{names.IAM_KEY_SWEEP_DLQ}-not-empty"
    ]
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}
    ]
    assert alarm["AlarmActions"]


def test_the_key_sweep_needs_no_grant_but_sending_to_its_own_queue(synthesized: Synthesized):
    """The sweep uses what the rotation is granted already (the IAM user's keys, the
    secrets rotate_iam rotates); all it adds is the send to its queue, on that queue
    and through SQS only. No new wildcard."""
    statements = _policy_statements(synthesized, _ROLE_PREFIX["rotate_iam"])
    queue_arns = {
        json.dumps({"Fn::GetAtt": [queue_id, "Arn"]})
        for queue_id, queue in synthesized.resources("AWS::SQS::Queue").items()
        if queue["Properties"]["QueueName"] == names.IAM_KEY_SWEEP_DLQ
    }
    sqs = [s for s in statements if any(str(a).startswith("sqs:") for a in _list(s["Action"]))]
    assert [(_actions(s), json.dumps(s["Resource"])) for s in sqs] == [
        ({"sqs:SendMessage"}, queue_arn) for queue_arn in queue_arns
    ]
    through = {
        s.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService")
        for s in statements
        if any(str(a).startswith("kms:") for a in _list(s["Action"]))
    }
    assert {service.split(".")[0] for service in through} == {"dynamodb", "sqs"}
    # The only statement on every resource is the one CDK's rotation schedule and
    # X-Ray need (acknowledged in cdk/secrets.py).
    unscoped = [s for s in statements if s["Resource"] == "*"]
    assert [_actions(s) for s in unscoped] == [
        {"secretsmanager:GetRandomPassword", "xray:PutTelemetryRecords", "xray:PutTraceSegments"}
    ]
