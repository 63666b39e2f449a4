"""Keys, network and database: what the template must say about each."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Match

from cdk.app import default_context
from cdk.network import DB_PARAMETERS
from functions.shared.db.roles import TIER_LOGIN_SETTINGS
from tests.infrastructure.conftest import REPO_ROOT, Synthesized


def test_platform_key_rotates_yearly(template: Any):
    template.has_resource_properties(
        "AWS::KMS::Key", {"EnableKeyRotation": True, "RotationPeriodInDays": 365}
    )


def test_key_lets_cloudwatch_logs_use_it_only_for_this_accounts_log_groups(
    synthesized: Synthesized,
):
    (key,) = synthesized.resources("AWS::KMS::Key").values()
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    logs = next(s for s in statements if s.get("Sid") == "CloudWatchLogsOfThisAccount")
    assert "kms:EncryptionContext:aws:logs:arn" in logs["Condition"]["ArnLike"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _role_statements(synthesized: Synthesized) -> list[tuple[str, dict[str, Any]]]:
    """(role, statement) for every statement of every identity policy in the stack."""
    found: list[tuple[str, dict[str, Any]]] = []
    for logical_id, policy in synthesized.resources("AWS::IAM::Policy").items():
        roles = [role.get("Ref", "") for role in policy["Properties"].get("Roles", [])]
        owner = ",".join(roles) or logical_id
        found += [(owner, s) for s in policy["Properties"]["PolicyDocument"]["Statement"]]
    for logical_id, role in synthesized.resources("AWS::IAM::Role").items():
        for inline in role["Properties"].get("Policies", []):
            found += [(logical_id, s) for s in inline["PolicyDocument"]["Statement"]]
    return found


def test_no_role_may_use_the_platform_key_but_through_a_service(synthesized: Synthesized):
    """The key encrypts every secret, table, queue, log group, the topic and the trail,
    and no principal of the stack calls KMS itself: each role uses it through the
    service it writes to (SNS for the secret-read alerts' publisher, as for the
    responder; DynamoDB, SQS for the functions). A key statement without
    kms:ViaService would let the role's credentials decrypt any ciphertext made under
    the key directly; CDK's grants (topic.grantPublish among them) write exactly that."""
    (key_id,) = synthesized.resources("AWS::KMS::Key")
    key_arn = {"Fn::GetAtt": [key_id, "Arn"]}
    through: dict[str, set[str | None]] = {}
    for owner, statement in _role_statements(synthesized):
        if (
            statement.get("Effect") == "Allow"
            and any(str(action).startswith("kms:") for action in _as_list(statement["Action"]))
            and key_arn in _as_list(statement.get("Resource", []))
        ):
            service = statement.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService")
            through.setdefault(owner, set()).add(service)

    unconditioned = sorted(owner for owner, services in through.items() if None in services)
    assert unconditioned == [], (
        f"roles {unconditioned} may use the platform key directly, not only through a service"
    )
    (publisher,) = (
        owner for owner in through if owner.startswith("DetectionSecretReadAlertPublisher")
    )
    assert through[publisher] == {f"sns.{default_context()['babyshield:region']}.amazonaws.com"}


def test_vpc_has_no_route_to_the_internet(template: Any):
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    template.resource_count_is("AWS::EC2::InternetGateway", 0)
    template.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "ALL"})


def test_interface_endpoints_for_secrets_manager_ssm_and_xray(synthesized: Synthesized):
    services = {
        str(endpoint["Properties"]["ServiceName"])
        for endpoint in synthesized.resources("AWS::EC2::VPCEndpoint").values()
    }
    joined = " ".join(services)
    for service in ("secretsmanager", "ssm", "xray", "dynamodb"):
        assert service in joined


def test_postgres_is_encrypted_private_protected_and_backed_up(template: Any):
    template.has_resource_properties(
        "AWS::RDS::DBInstance",
        {
            "Engine": "postgres",
            "StorageEncrypted": True,
            "KmsKeyId": Match.any_value(),
            "PubliclyAccessible": False,
            "DeletionProtection": True,
            "BackupRetentionPeriod": 14,
            "MultiAZ": True,
            "EnableCloudwatchLogsExports": ["postgresql", "upgrade"],
            "Port": "5432",
        },
    )


def test_the_database_takes_no_iam_authentication(synthesized: Synthesized):
    """Every login is a password from Secrets Manager: no role holds rds-db:connect
    and no migration grants rds_iam. IAM authentication on would only be one more way
    in (any principal that is ever given rds-db:connect on `*`, a token minted for the
    master user), guarded by nothing the platform watches."""
    (db,) = synthesized.resources("AWS::RDS::DBInstance").values()
    grants_connect = [
        statement
        for _, statement in _role_statements(synthesized)
        if any(str(a).lower().startswith("rds-db:") for a in _as_list(statement["Action"]))
    ]

    assert db["Properties"].get("EnableIAMDatabaseAuthentication", False) is False
    assert grants_connect == []
    assert not [p.name for p in (REPO_ROOT / "sql").rglob("*.sql") if "rds_iam" in p.read_text()]


def test_parameter_group_forces_tls_and_loads_pgaudit(template: Any):
    template.has_resource_properties(
        "AWS::RDS::DBParameterGroup",
        {
            "Parameters": Match.object_like(
                {
                    "rds.force_ssl": "1",
                    "shared_preload_libraries": Match.string_like_regexp("pgaudit"),
                    "pgaudit.log": Match.string_like_regexp("ddl"),
                    "log_connections": "1",
                    # no tier login can change its own password
                    "rds.restrict_password_commands": "1",
                }
            )
        },
    )
    assert DB_PARAMETERS["pgaudit.log"]


def test_one_session_cannot_fill_the_database_storage_with_temporary_files(
    synthesized: Synthesized,
):
    """A tier can lift its own statement_timeout, so the server bounds what one
    statement spills to disk, at a small part of the most storage the instance grows to."""
    (group,) = synthesized.resources("AWS::RDS::DBParameterGroup").values()
    (db,) = synthesized.resources("AWS::RDS::DBInstance").values()
    limit_kb = int(group["Properties"]["Parameters"]["temp_file_limit"])
    max_storage_kb = int(db["Properties"]["MaxAllocatedStorage"]) * 1024 * 1024
    assert 0 < limit_kb <= max_storage_kb // 20


def test_a_statement_whose_client_is_gone_is_ended_within_seconds(synthesized: Synthesized):
    """A Lambda that timed out mid-statement is gone; without the check the server ran
    its statement on, with its locks and connection slot, for as long as no timeout
    stopped it. Every login gets the check, as the tier logins (sql/024) and the
    embedded server (ops/postgres.py) do, and well within the API's 29 s."""
    (group,) = synthesized.resources("AWS::RDS::DBParameterGroup").values()
    interval_ms = int(group["Properties"]["Parameters"]["client_connection_check_interval"])
    assert 0 < interval_ms <= 10_000
    seconds = f"{interval_ms // 1000}s"
    assert {
        tier: TIER_LOGIN_SETTINGS[tier]["client_connection_check_interval"]
        for tier in TIER_LOGIN_SETTINGS
    } == dict.fromkeys(TIER_LOGIN_SETTINGS, seconds)
    embedded = (REPO_ROOT / "ops" / "postgres.py").read_text()
    assert f"-c client_connection_check_interval={seconds}" in embedded


def test_database_admits_only_the_functions_that_use_it(synthesized: Synthesized):
    (db,) = synthesized.resources("AWS::RDS::DBInstance").values()
    (db_group,) = db["Properties"]["VPCSecurityGroups"]
    group_id = db_group["Fn::GetAtt"][0]

    ingress = [
        rule["Properties"]
        for rule in synthesized.resources("AWS::EC2::SecurityGroupIngress").values()
        if rule["Properties"]["GroupId"]["Fn::GetAtt"][0] == group_id
    ]
    sources = sorted(rule["SourceSecurityGroupId"]["Fn::GetAtt"][0] for rule in ingress)

    assert len(sources) == 3
    assert all(rule["FromPort"] == rule["ToPort"] == 5432 for rule in ingress)
    assert all("CidrIp" not in rule for rule in ingress)
    for package in ("api", "rotatedb", "migrate"):
        assert any(source.startswith(f"Functions{package}SecurityGroup") for source in sources)


def _egress(group: dict[str, Any]) -> list[dict[str, Any]]:
    return list(group["Properties"].get("SecurityGroupEgress", []))


def test_database_and_endpoints_cannot_open_connections(synthesized: Synthesized):
    """They only answer: no egress beyond CDK's placeholder that matches nothing."""
    groups = synthesized.resources("AWS::EC2::SecurityGroup")
    (db,) = synthesized.resources("AWS::RDS::DBInstance").values()
    answering = [group["Fn::GetAtt"][0] for group in db["Properties"]["VPCSecurityGroups"]]
    for endpoint in synthesized.resources("AWS::EC2::VPCEndpoint").values():
        if endpoint["Properties"].get("VpcEndpointType") == "Interface":
            answering += [g["Fn::GetAtt"][0] for g in endpoint["Properties"]["SecurityGroupIds"]]

    assert len(answering) == 5  # PostgreSQL and four interface endpoints
    standalone_egress = [
        rule["Properties"]["GroupId"]["Fn::GetAtt"][0]
        for rule in synthesized.resources("AWS::EC2::SecurityGroupEgress").values()
    ]
    for group_id in answering:
        (rule,) = _egress(groups[group_id])
        assert rule["CidrIp"] == "255.255.255.255/32", f"{group_id} may connect out: {rule}"
        assert group_id not in standalone_egress


def test_migration_trigger_runs_the_migrate_function_after_the_database(
    synthesized: Synthesized,
):
    trigger = synthesized.resources("Custom::Trigger")[synthesized.trigger_running("migrate")]
    (db_id,) = synthesized.resources("AWS::RDS::DBInstance")

    assert trigger["Properties"]["InvocationType"] == "RequestResponse"
    assert db_id in trigger["DependsOn"]
    # And after every rule that lets the migrate function reach the database and the
    # endpoints: the ingress rules on their groups, not only its own egress rules.
    admitting = [
        rule_id
        for rule_id, rule in synthesized.resources("AWS::EC2::SecurityGroupIngress").items()
        if rule["Properties"]["SourceSecurityGroupId"]["Fn::GetAtt"][0].startswith(
            "FunctionsmigrateSecurityGroup"
        )
    ]
    assert len(admitting) == 3  # PostgreSQL, and the Secrets Manager and X-Ray endpoints
    assert set(admitting) <= set(trigger["DependsOn"])


def test_the_migration_trigger_outwaits_the_migrate_function(synthesized: Synthesized):
    """The trigger's provider waits `Timeout` for its Invoke, then retries it: with the
    function's own five minutes there, a run that used its whole budget (connection
    retries, a 240 s lock wait) was invoked again, and the provider's 15 minutes ran
    out with no answer to CloudFormation, which waits an hour for one."""
    trigger = synthesized.resources("Custom::Trigger")[synthesized.trigger_running("migrate")]
    migrate = next(
        function
        for function in synthesized.resources("AWS::Lambda::Function").values()
        if function["Properties"].get("FunctionName") == "babyshield-migrate"
    )
    function_ms = int(migrate["Properties"]["Timeout"]) * 1000

    assert int(trigger["Properties"]["Timeout"]) >= function_ms + 60_000


def test_new_api_code_waits_for_the_migrations(synthesized: Synthesized):
    trigger_id = synthesized.trigger_running("migrate")
    api = next(
        function
        for function in synthesized.resources("AWS::Lambda::Function").values()
        if function["Properties"].get("FunctionName") == "babyshield-api"
    )

    assert trigger_id in api["DependsOn"]
