"""Every Lambda built the same way, each with a role of its own and least privilege."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cdk.assets import LAMBDA_PYTHON_VERSION, stale_bytecode
from cdk.functions import LAMBDA_ITSELF
from functions.shared import names
from functions.shared.aws_clients import BACKGROUND, CLEANUP, RATE_LIMIT, REQUEST
from functions.shared.settings import Settings
from tests.infrastructure.conftest import VPC_ACTIONS, Synthesized

PACKAGES = names.FUNCTION_PACKAGES

# The only actions allowed on Resource "*", each for a reason recorded where it
# is granted: none of them supports resource-level permissions.
RESOURCE_WILDCARD_ACTIONS = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "logs:GetQueryResults",
    "logs:StopQuery",
    "secretsmanager:GetRandomPassword",
}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _functions(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    return {
        f["Properties"]["FunctionName"]: f
        for f in synthesized.resources("AWS::Lambda::Function").values()
        if str(f["Properties"].get("FunctionName", "")).startswith(names.PREFIX)
    }


# The functions whose AWS clients all use the background budget, and what a step
# does besides one stalled call (the other calls, a database login for rotate_db).
BACKGROUND_BUDGET_PACKAGES = ("rotate_db", "rotate_jwt", "rotate_iam", "secret_age")
REST_OF_A_STEP_SECONDS = 30


@pytest.mark.parametrize("package", BACKGROUND_BUDGET_PACKAGES)
def test_a_stalled_aws_call_fails_before_the_function_times_out(
    synthesized: Synthesized, package: str
):
    # A call that raises is logged and retried by the caller; a Lambda timeout
    # ends the step wherever it is with nothing said.
    timeout = _functions(synthesized)[names.function_name(package)]["Properties"]["Timeout"]

    assert timeout >= BACKGROUND.worst_case_seconds + REST_OF_A_STEP_SECONDS


def test_a_stalled_aws_call_on_a_request_is_a_503_before_the_gateway_gives_up(
    synthesized: Synthesized,
):
    api = _functions(synthesized)[names.function_name("api")]["Properties"]
    settings = Settings()
    # The rest of a request that can wait: a pooled connection, then a new login.
    database_waits = settings.db_pool_timeout_seconds + settings.db_connect_timeout_seconds

    assert REQUEST.worst_case_seconds + database_waits <= api["Timeout"]
    # A webhook delivery whose claim or upsert failed then releases its claim
    # (functions/api/recalls/feed.py): still a 503 before the gateway gives up.
    assert (
        REQUEST.worst_case_seconds + database_waits + CLEANUP.worst_case_seconds <= api["Timeout"]
    )
    # A keyed request whose rate limit stalls goes on (it fails open) to its route's
    # database work: both inside the gateway's wait.
    assert RATE_LIMIT.worst_case_seconds + database_waits <= api["Timeout"]


def test_the_responder_outlasts_its_query_deadline_and_a_stalled_call(synthesized: Synthesized):
    settings = Settings()
    stalled_call = replace(BACKGROUND, max_attempts=settings.aws_max_attempts)
    responder = _functions(synthesized)[names.function_name("waf_responder")]["Properties"]

    assert "AWS_MAX_ATTEMPTS" not in responder["Environment"]["Variables"]
    assert "LOGS_QUERY_DEADLINE_SECONDS" not in responder["Environment"]["Variables"]
    assert responder["Timeout"] >= (
        settings.logs_query_deadline_seconds
        + stalled_call.worst_case_seconds
        + REST_OF_A_STEP_SECONDS
    )
    # The expiry sweep starts every five minutes: one run ends before the next starts.
    assert responder["Timeout"] < 5 * 60


@pytest.mark.parametrize("package", PACKAGES)
def test_function_is_built_the_standard_way(synthesized: Synthesized, package: str):
    function = _functions(synthesized)[names.function_name(package)]["Properties"]

    assert function["Runtime"] == f"python{LAMBDA_PYTHON_VERSION}"
    assert function["Architectures"] == ["arm64"]
    assert function["Handler"] == f"functions.{package}.handler.lambda_handler"
    assert function["TracingConfig"] == {"Mode": "Active"}
    assert function["LoggingConfig"]["LogFormat"] == "JSON"
    assert "LogGroup" in function["LoggingConfig"]
    assert function["ReservedConcurrentExecutions"] >= 1
    assert "KmsKeyArn" in function
    assert len(function["Layers"]) == 1
    environment = function["Environment"]["Variables"]
    assert environment["POWERTOOLS_SERVICE_NAME"] == "babyshield"
    assert environment["BABYSHIELD_ENV"] == "aws"
    # Powertools' troubleshooting switches log whole events and debug lines: not shipped.
    assert not {"POWERTOOLS_LOGGER_LOG_EVENT", "POWERTOOLS_DEV", "POWERTOOLS_DEBUG"} & set(
        environment
    )


def test_each_function_has_a_role_of_its_own(synthesized: Synthesized):
    roles = [f["Properties"]["Role"]["Fn::GetAtt"][0] for f in _functions(synthesized).values()]

    assert len(roles) == len(PACKAGES)
    assert len(set(roles)) == len(roles)


def _role_policy_statements(synthesized: Synthesized, role_id: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in synthesized.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_a_function_in_the_vpc_may_create_its_network_interfaces(synthesized: Synthesized):
    """Lambda creates a VPC function's network interfaces with the function's role, and
    CDK grants that only to a role it creates itself. Ours carry the network-interface
    actions alone, not AWSLambdaVPCAccessExecutionRole, whose logs:CreateLogGroup,
    CreateLogStream and PutLogEvents on `*` would open every log group of the account
    to the function. The actions hold only without lambda:SourceFunctionArn: Lambda's
    own calls, never the function's code (test_vpc_function_least_privilege.py)."""
    roles = synthesized.resources("AWS::IAM::Role")
    in_vpc = [f for f in _functions(synthesized).values() if "VpcConfig" in f["Properties"]]
    assert {f["Properties"]["FunctionName"] for f in in_vpc} == {
        names.function_name(p) for p in ("api", "rotate_db", "migrate")
    }
    for function in in_vpc:
        name = function["Properties"]["FunctionName"]
        role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
        assert not roles[role_id]["Properties"].get("ManagedPolicyArns"), name
        (interfaces,) = [
            s
            for s in _role_policy_statements(synthesized, role_id)
            if any(str(a).startswith("ec2:") for a in _as_list(s["Action"]))
        ]
        assert sorted(interfaces["Action"]) == sorted(VPC_ACTIONS), name
        assert interfaces["Resource"] == "*", name
        assert interfaces["Condition"] == LAMBDA_ITSELF, name


def test_api_environment_names_its_tables_secrets_and_allowlist(synthesized: Synthesized):
    environment = _functions(synthesized)[names.function_name("api")]["Properties"]["Environment"][
        "Variables"
    ]

    assert environment["ADMIN_ALLOWED_CIDRS_PARAMETER"] == names.ADMIN_ALLOWLIST_PARAMETER
    assert environment["RATE_LIMIT_TABLE"] == names.RATE_LIMIT_TABLE
    assert environment["WEBHOOK_NONCE_TABLE"] == names.WEBHOOK_NONCE_TABLE
    # The API neither uses nor may touch the responder's idempotency records.
    assert "IDEMPOTENCY_TABLE" not in environment
    for variable, secret in (
        ("DB_READONLY_SECRET_ID", "db-readonly"),
        ("DB_APP_SECRET_ID", "db-app"),
        ("JWT_SECRET_ID", "jwt-signing-key"),
        ("WEBHOOK_SECRET_ID", "webhook-signing-secret"),
    ):
        assert environment[variable] == names.secret_name(secret)
    assert "DB_ADMIN_SECRET_ID" not in environment


def test_the_admin_block_routes_reach_what_they_change(synthesized: Synthesized):
    """/admin/blocks keeps the responder's registry and IP sets from inside the VPC."""
    api = _functions(synthesized)[names.function_name("api")]["Properties"]
    environment = api["Environment"]["Variables"]
    assert environment["BLOCK_REGISTRY_TABLE"] == names.BLOCK_REGISTRY_TABLE
    assert environment["NEVER_BLOCK_CIDRS_PARAMETER"] == names.NEVER_BLOCK_PARAMETER
    # The IP sets by id: no ListIPSets call, which takes no resource scoping
    assert "Fn::GetAtt" in environment["AUTO_BLOCK_IPSET_V4_ID"]
    assert "Fn::GetAtt" in environment["AUTO_BLOCK_IPSET_V6_ID"]
    role = api["Role"]["Fn::GetAtt"][0]
    statements = [
        statement
        for policy in synthesized.resources("AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    (ip_sets,) = [s for s in statements if s.get("Sid") == "AdminBlockIpSets"]
    assert sorted(ip_sets["Action"]) == ["wafv2:GetIPSet", "wafv2:UpdateIPSet"]
    assert len(ip_sets["Resource"]) == 2
    # The VPC has no route out but its endpoints: WAF's is one of them
    services = json.dumps(
        [
            e["Properties"]["ServiceName"]
            for e in synthesized.resources("AWS::EC2::VPCEndpoint").values()
        ]
    )
    assert ".wafv2" in services


def test_responder_environment_names_ip_sets_topic_and_log_group(synthesized: Synthesized):
    environment = _functions(synthesized)[names.function_name("waf_responder")]["Properties"][
        "Environment"
    ]["Variables"]

    assert environment["AUTO_BLOCK_IPSET_V4_NAME"] == names.AUTO_BLOCK_IPSET_V4
    assert environment["AUTO_BLOCK_IPSET_V6_NAME"] == names.AUTO_BLOCK_IPSET_V6
    assert environment["AUTO_BLOCK_IPSET_V4_ID"]["Fn::GetAtt"][1] == "Id"
    assert environment["AUTO_BLOCK_IPSET_V6_ID"]["Fn::GetAtt"][1] == "Id"
    assert environment["ONCALL_TOPIC_ARN"]["Ref"].startswith("DetectionOnCall")
    assert environment["WAF_LOG_GROUP"] == names.WAF_LOG_GROUP
    assert environment["BLOCK_REGISTRY_TABLE"] == names.BLOCK_REGISTRY_TABLE


# Action wildcards CDK's own grants write, each acknowledged where granted
# (KMS data-key variants on the one platform key, for encrypted tables).
ACTION_WILDCARDS = {"kms:GenerateDataKey*", "kms:ReEncrypt*"}


def test_no_policy_grants_wildcard_actions(synthesized: Synthesized):
    for logical_id, policy in synthesized.resources("AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = (
                statement["Action"]
                if isinstance(statement["Action"], list)
                else [statement["Action"]]
            )
            for action in actions:
                if action.endswith("*"):
                    assert action in ACTION_WILDCARDS, f"{logical_id}: {action}"


def test_resource_wildcards_only_for_actions_without_resource_scoping(synthesized: Synthesized):
    """On `*`: the actions IAM offers no resource for, and Lambda's network-interface
    calls, which hold for Lambda alone (DescribeNetworkInterfaces works on `*` only)."""
    function_roles = {
        f["Properties"]["Role"]["Fn::GetAtt"][0] for f in _functions(synthesized).values()
    }
    for logical_id, policy in synthesized.resources("AWS::IAM::Policy").items():
        if not {r["Ref"] for r in policy["Properties"]["Roles"]} & function_roles:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Resource"] != "*":
                continue
            actions = set(_as_list(statement["Action"]))
            if statement.get("Condition") == LAMBDA_ITSELF:
                actions -= set(VPC_ACTIONS)
            assert actions <= RESOURCE_WILDCARD_ACTIONS, f"{logical_id}: {sorted(actions)}"


def test_function_log_groups_are_encrypted_and_retained(synthesized: Synthesized):
    groups = {
        g["Properties"].get("LogGroupName"): g["Properties"]
        for g in synthesized.resources("AWS::Logs::LogGroup").values()
        # Names made from another resource's id (the stage's execution logs) are tokens.
        if not isinstance(g["Properties"].get("LogGroupName"), dict)
    }
    for package in PACKAGES:
        group = groups[f"/aws/lambda/{names.function_name(package)}"]
        assert group["RetentionInDays"] == 365
        assert "KmsKeyId" in group


def _asset_dir(synthesized: Synthesized, resource: dict[str, Any]) -> Path:
    properties = resource["Properties"]
    code = properties.get("Code") or properties["Content"]
    asset_hash = code["S3Key"].removesuffix(".zip")
    return synthesized.outdir / f"asset.{asset_hash}"


@pytest.mark.parametrize("package", PACKAGES)
def test_asset_holds_shared_code_and_its_own_package_only(synthesized: Synthesized, package: str):
    asset = _asset_dir(synthesized, _functions(synthesized)[names.function_name(package)])

    top = sorted(p.name for p in asset.iterdir())
    packages = sorted(p.name for p in (asset / "functions").iterdir() if p.name != "__pycache__")

    expected = {"functions"}
    if package in ("api", "rotate_db", "migrate"):
        expected.add("certs")  # the RDS CA bundle, for verify-full TLS
    if package == "migrate":
        expected.add("sql")
    assert top == sorted(expected)
    assert packages == sorted(["__init__.py", "shared", package])
    assert (asset / "functions" / "shared" / "names.py").is_file()


@pytest.mark.parametrize("package", PACKAGES)
def test_asset_ships_current_bytecode_for_the_runtime(synthesized: Synthesized, package: str):
    asset = _asset_dir(synthesized, _functions(synthesized)[names.function_name(package)])
    tag = f"cpython-{LAMBDA_PYTHON_VERSION.replace('.', '')}"

    assert stale_bytecode(asset) == []
    # Only the runtime's bytecode: nothing this machine's interpreter left in the tree.
    assert {p.name.split(".")[-2] for p in asset.rglob("*.pyc")} == {tag}


def test_dependency_layer_is_built_for_arm64_linux(synthesized: Synthesized):
    (layer,) = synthesized.resources("AWS::Lambda::LayerVersion").values()
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["Properties"]["CompatibleRuntimes"] == [f"python{LAMBDA_PYTHON_VERSION}"]
    site = _asset_dir(synthesized, layer) / "python"

    extensions = [p.name for p in site.rglob("*.so")]

    assert any(p.name.startswith("pydantic_core") for p in site.iterdir())
    assert extensions, "compiled dependencies (pydantic-core, psycopg-binary) are present"
    assert all("x86_64" not in name for name in extensions), extensions
    assert any("aarch64" in name for name in extensions)
    assert stale_bytecode(site) == []


def test_cdk_provider_functions_log_to_retained_encrypted_groups(synthesized: Synthesized):
    groups = synthesized.resources("AWS::Logs::LogGroup")
    providers = [
        (logical_id, function)
        for logical_id, function in synthesized.resources("AWS::Lambda::Function").items()
        if "FunctionName" not in function["Properties"]
    ]

    assert len(providers) == 2  # the default security group's restriction, triggers
    for logical_id, function in providers:
        group_id = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert group_id in function["DependsOn"], logical_id
        group = groups[group_id]
        assert group["Properties"]["RetentionInDays"] == 365
        assert "KmsKeyId" in group["Properties"]
        assert group["DeletionPolicy"] == "Retain"
