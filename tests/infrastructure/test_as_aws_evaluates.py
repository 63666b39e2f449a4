"""The template judged by the rules AWS applies to it: IAM condition operators, KMS
request contexts, CloudFormation's dependency order. Each test failed on a stack
that synthesized and passed cdk-nag, and would have failed (or weakened) in AWS.

They read the session's one synth (conftest.py::synthesized).
"""

from __future__ import annotations

import fnmatch
from typing import Any

from functions.shared import names
from tests.infrastructure.conftest import Synthesized

ACCOUNT = "123456789012"
REGION = "us-east-1"


# --- helpers ---------------------------------------------------------------------------


def _resolve(value: Any) -> Any:
    """A template value with the pseudo parameters filled in (enough for key policies)."""
    if isinstance(value, dict):
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(str(_resolve(part)) for part in parts)
        if value.get("Ref") == "AWS::AccountId":
            return ACCOUNT
        if value.get("Ref") == "AWS::Region":
            return REGION
        if value.get("Ref") == "AWS::Partition":
            return "aws"
    return value


def _arn_like(pattern: str, arn: str) -> bool:
    """IAM's ArnLike: each of the six colon-separated components matched on its own."""
    pattern_parts = pattern.split(":", 5)
    arn_parts = arn.split(":", 5)
    if len(pattern_parts) != 6 or len(arn_parts) != 6:
        return False
    return all(
        fnmatch.fnmatchcase(a, p.replace("[", "[[]"))
        for p, a in zip(pattern_parts, arn_parts, strict=True)
    )


def _key_statements(synthesized: Synthesized) -> list[dict[str, Any]]:
    (key,) = synthesized.resources("AWS::KMS::Key").values()
    return list(key["Properties"]["KeyPolicy"]["Statement"])


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement.get("Action", [])
    return actions if isinstance(actions, list) else [actions]


def _service_principals(statement: dict[str, Any]) -> list[str]:
    principal = statement.get("Principal", {})
    if not isinstance(principal, dict):
        return []
    services = principal.get("Service", [])
    return services if isinstance(services, list) else [services]


def _allows(statement: dict[str, Any], action: str) -> bool:
    return statement.get("Effect") == "Allow" and any(
        fnmatch.fnmatchcase(action.lower(), a.lower()) for a in _actions(statement)
    )


def _references(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            found.add(value["Ref"])
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            found.add(target[0] if isinstance(target, list) else str(target).split(".")[0])
        for item in value.values():
            found |= _references(item)
    elif isinstance(value, list):
        for item in value:
            found |= _references(item)
    return found


def _depends_on(synthesized: Synthesized, logical_id: str) -> set[str]:
    """Everything CloudFormation finishes before `logical_id` starts (transitively)."""
    resources = synthesized.template_json["Resources"]
    seen: set[str] = set()
    pending = [logical_id]
    while pending:
        current = resources[pending.pop()]
        direct = current.get("DependsOn", [])
        direct = [direct] if isinstance(direct, str) else list(direct)
        for dependency in [*direct, *_references(current.get("Properties", {}))]:
            if dependency in resources and dependency not in seen:
                seen.add(dependency)
                pending.append(dependency)
    return seen


# --- KMS key policy ----------------------------------------------------------------------


def test_cloudwatch_logs_may_use_the_key_for_this_accounts_log_groups(
    synthesized: Synthesized,
):
    """CloudWatch Logs calls KMS with `aws:logs:arn` = `arn:aws:logs:R:A:log-group:NAME`
    (a colon before the name). The key policy's ArnLike must match that for every
    encrypted log group of the stack, or CreateLogGroup with the key is refused and
    no function, WAF, API or trail log group can be created. `log-group/*` (slash)
    never matches a log group ARN."""
    statement = next(
        s for s in _key_statements(synthesized) if s.get("Sid") == "CloudWatchLogsOfThisAccount"
    )
    pattern = _resolve(statement["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"])
    log_groups = [
        group["Properties"]["LogGroupName"]
        for group in synthesized.resources("AWS::Logs::LogGroup").values()
        if isinstance(group["Properties"].get("LogGroupName"), str)
        and "KmsKeyId" in group["Properties"]
    ]
    assert f"/aws/lambda/{names.function_name('api')}" in log_groups
    assert names.WAF_LOG_GROUP in log_groups

    refused = [
        name
        for name in log_groups
        if not _arn_like(pattern, f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}")
    ]

    assert not refused, f"key policy pattern {pattern!r} refuses CloudWatch Logs for {refused}"


def test_cloudtrail_may_describe_the_key(synthesized: Synthesized):
    """CloudTrail needs kms:DescribeKey on the trail's key (AWS: "Allow CloudTrail to
    describe key"). A DescribeKey request carries no encryption context, so a grant
    conditioned on `kms:EncryptionContext:aws:cloudtrail:arn` never applies to it:
    some statement must allow CloudTrail DescribeKey without such a condition."""
    usable = [
        s
        for s in _key_statements(synthesized)
        if "cloudtrail.amazonaws.com" in _service_principals(s)
        and _allows(s, "kms:DescribeKey")
        and not any(
            key.startswith("kms:EncryptionContext")
            for operator in s.get("Condition", {}).values()
            for key in operator
        )
    ]

    assert usable, "CloudTrail's only DescribeKey grant depends on an encryption context"


def test_every_service_principal_uses_the_key_only_for_this_account(synthesized: Synthesized):
    """docs/INFRASTRUCTURE.md (Keys): the key policy's statements for services are
    "each scoped to this account". An unconditioned Allow for a service principal
    lets that service use the key on behalf of any account (confused deputy): any
    account's EventBridge rule may encrypt with, or decrypt through, the platform
    key that protects every secret."""
    unscoped = [
        {"principals": _service_principals(s), "actions": _actions(s), "sid": s.get("Sid")}
        for s in _key_statements(synthesized)
        if s.get("Effect") == "Allow" and _service_principals(s) and not s.get("Condition")
    ]

    assert not unscoped, f"service statements without any condition: {unscoped}"


# --- deploy order: first admin rotation vs the migration ---------------------------------


def test_the_first_admin_rotation_cannot_race_the_migration(synthesized: Synthesized):
    """Secrets Manager starts a rotation as soon as a schedule is created and runs it
    asynchronously; between its setSecret and finishSecret the admin login already
    has the pending password while AWSCURRENT still holds the old one (ROTATION.md).
    The migration trigger logs in with AWSCURRENT and does not retry, so it must not
    be started right after the admin schedule: the admin schedule must come after
    the migration, as the tiers' schedules do."""
    rotations = synthesized.resources("AWS::SecretsManager::RotationSchedule")
    attachments = synthesized.resources("AWS::SecretsManager::SecretTargetAttachment")
    resources = synthesized.template_json["Resources"]
    admin_schedule = next(
        logical_id
        for logical_id, schedule in rotations.items()
        if (ref := schedule["Properties"]["SecretId"].get("Ref")) in attachments
        and (
            resources[attachments[ref]["Properties"]["SecretId"]["Ref"]]["Properties"].get("Name")
            == names.secret_name("db-admin")
        )
    )
    migration = synthesized.trigger_running("migrate")

    assert admin_schedule not in _depends_on(synthesized, migration), (
        f"{migration} starts right after {admin_schedule} starts the first admin rotation"
    )
    assert migration in _depends_on(synthesized, admin_schedule)
    # The migration still waits for the database and its secret's host
    needs = _depends_on(synthesized, migration)
    assert set(synthesized.resources("AWS::RDS::DBInstance")) <= needs
    assert set(attachments) <= needs


# --- detection ---------------------------------------------------------------------------


def test_unexpected_secret_read_alerts_are_not_lost_silently(synthesized: Synthesized):
    """The alert for a secret read by an unexpected principal is the one detection of
    a credential theft. Its delivery to the on-call topic must keep what it could not
    deliver (a dead-letter queue, as the responder's and the age check's targets do);
    without one, an alert EventBridge fails to publish (a KMS or topic-policy error,
    a throttled publish past its retries) is dropped with no trace."""
    rules = {
        rule["Properties"]["Name"]: rule["Properties"]["Targets"]
        for rule in synthesized.resources("AWS::Events::Rule").values()
        if str(rule["Properties"].get("Name", "")).startswith(names.SECRET_READ_RULE)
    }
    assert rules

    without_dlq = sorted(
        name
        for name, targets in rules.items()
        if any("DeadLetterConfig" not in target for target in targets)
    )

    assert not without_dlq, f"alert targets without a dead-letter queue: {without_dlq}"


# --- network -----------------------------------------------------------------------------


def test_vpc_endpoints_admit_only_this_accounts_resources(synthesized: Synthesized):
    """The VPC has no internet route, so the endpoints are the functions' only way
    out. Without an endpoint policy an endpoint takes any request, also one signed
    with another account's credentials for that account's secret, parameter or
    table: code running in the API function could copy data out through them. Each
    endpoint should carry a policy limiting it to this account's principals or
    resources (aws:PrincipalAccount / aws:ResourceAccount)."""

    def scoped(endpoint: dict[str, Any]) -> bool:
        statements = endpoint["Properties"].get("PolicyDocument", {}).get("Statement", [])
        return bool(statements) and all(
            s["Effect"] == "Allow"
            and "aws:PrincipalAccount" in s.get("Condition", {}).get("StringEquals", {})
            for s in statements
        )

    endpoints = synthesized.resources("AWS::EC2::VPCEndpoint").values()
    open_endpoints = sorted(
        str(_resolve(endpoint["Properties"]["ServiceName"]))
        for endpoint in endpoints
        if not scoped(endpoint)
    )

    assert not open_endpoints, f"endpoints without an account-scoped policy: {open_endpoints}"
    holding_data = [
        e
        for e in endpoints
        if any(
            service in str(_resolve(e["Properties"]["ServiceName"]))
            for service in ("dynamodb", "secretsmanager")
        )
    ]
    assert len(holding_data) == 2
    for endpoint in holding_data:
        (statement,) = endpoint["Properties"]["PolicyDocument"]["Statement"]
        assert "aws:ResourceAccount" in statement["Condition"]["StringEquals"]
