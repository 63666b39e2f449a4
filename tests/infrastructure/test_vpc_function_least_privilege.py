"""The functions in the VPC (api, rotate_db, migrate), as an attacker running code in
one of them would find them: its own log group and nothing else in CloudWatch Logs,
no network-interface calls of its own, and only the endpoints of the services its
code calls.

The VPC makes these functions special twice over: Lambda needs EC2 permissions on
their roles (AWS offers them bundled with logs on `*` in AWSLambdaVPCAccessExecutionRole),
and their network reaches AWS only through the endpoints they are let through to.
"""

from __future__ import annotations

from typing import Any

import pytest

from cdk.functions import function_specs
from functions.shared import names
from tests.infrastructure.conftest import VPC_ACTIONS, Synthesized
from tests.infrastructure.test_resource_grants import (
    ACCOUNT,
    REGION,
    Caller,
    Request,
    Template,
    evaluate,
)
from tests.support import aws_calls

VPC_PACKAGES = ("api", "rotate_db", "migrate")


@pytest.fixture(scope="module")
def stack(synthesized: Synthesized) -> Template:
    return Template(synthesized)


def _role_arn(stack: Template, package: str) -> str:
    return str(stack.resolve({"Fn::GetAtt": [stack.role_of(package), "Arn"]}))


def _function_arn(package: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{names.function_name(package)}"


def _log_stream(group: str) -> str:
    return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:log-stream:forged"


def _trail_log_stream(stack: Template, synthesized: Synthesized) -> str:
    """A stream of the trail's CloudWatch log group (named by CloudFormation)."""
    (trail,) = synthesized.resources("AWS::CloudTrail::Trail").values()
    group_arn = str(stack.resolve(trail["Properties"]["CloudWatchLogsLogGroupArn"]))
    return group_arn.removesuffix(":*") + ":log-stream:forged"


def _code_services(package: str) -> set[str]:
    """The IAM prefixes of the AWS services the function's code calls."""
    handler = f"functions.{package}.handler.lambda_handler"
    return {call.action.split(":", 1)[0] for call in aws_calls.reachable(handler).calls}


# --- CloudWatch Logs: its own group only ------------------------------------------------


@pytest.mark.parametrize("package", VPC_PACKAGES)
def test_a_vpc_function_cannot_write_into_other_log_groups(
    stack: Template, synthesized: Synthesized, package: str
):
    """Code running in the internet-facing `api` (or in rotate_db, migrate) must not
    write forged records into `aws-waf-logs-babyshield`, the evidence the responder's
    Logs Insights query turns into auto-blocks, nor into the trail's or another
    function's group, nor create groups of its own (unencrypted, never expiring).
    docs/INFRASTRUCTURE.md ("Functions"): each role "starts with only its log group".
    AWSLambdaVPCAccessExecutionRole, which these roles once carried for their network
    interfaces, grants CreateLogGroup, CreateLogStream and PutLogEvents on `*`."""
    caller = Caller(role=_role_arn(stack, package))
    other_functions = [p for p in ("api", "rotate_db", "waf_responder") if p != package]
    streams = [
        _log_stream(names.WAF_LOG_GROUP),
        *(_log_stream(f"/aws/lambda/{names.function_name(p)}") for p in other_functions),
        _trail_log_stream(stack, synthesized),
    ]
    requests = [
        *(Request(caller, "logs:PutLogEvents", stream) for stream in streams),
        *(Request(caller, "logs:CreateLogStream", stream) for stream in streams),
        Request(
            caller, "logs:CreateLogGroup", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:made-here"
        ),
    ]

    allowed = [request.describe() for request in requests if evaluate(stack, request)[0]]

    assert not allowed, f"{names.function_name(package)} may also: " + "; ".join(allowed)


# --- EC2: Lambda's network-interface calls, never the code's ----------------------------


@pytest.mark.parametrize("package", VPC_PACKAGES)
def test_only_lambda_itself_may_manage_the_functions_network_interfaces(
    stack: Template, package: str
):
    """Lambda creates and deletes a VPC function's network interfaces with the
    function's role, and its calls carry no lambda:SourceFunctionArn, which Lambda adds
    to every call made from inside the execution environment (Lambda developer guide,
    "Using source function ARN to control function access behavior"). The same actions
    from the function's code could delete the interfaces of other functions or attach
    addresses in any subnet: the role allows them only without that key."""
    caller = Caller(role=_role_arn(stack, package))
    interface = f"arn:aws:ec2:{REGION}:{ACCOUNT}:network-interface/eni-0123456789abcdef0"
    from_code = {"lambda:SourceFunctionArn": _function_arn(package)}

    by_lambda = [Request(caller, action, interface) for action in VPC_ACTIONS]
    by_code = [Request(caller, action, interface, from_code) for action in VPC_ACTIONS]

    refused = [r.describe() for r in by_lambda if not evaluate(stack, r)[0]]
    allowed = [r.describe() for r in by_code if evaluate(stack, r)[0]]
    assert not refused, f"Lambda cannot place {names.function_name(package)}: {refused}"
    assert not allowed, f"{names.function_name(package)}'s code may: " + "; ".join(allowed)


# --- the network: the endpoints of the services it calls --------------------------------

# Interface endpoint construct id (cdk/network.py) -> the IAM prefix of its service.
ENDPOINT_SERVICES = {
    "SecretsManager": "secretsmanager",  # pragma: allowlist secret
    "Ssm": "ssm",
    "XRay": "xray",
    "Wafv2": "wafv2",
}


def _function_group(synthesized: Synthesized, package: str) -> str:
    return next(
        lid
        for lid, group in synthesized.resources("AWS::EC2::SecurityGroup").items()
        if group["Properties"]["GroupDescription"].startswith(names.function_name(package) + ":")
    )


def _admitted_endpoints(synthesized: Synthesized, package: str) -> set[str]:
    """The interface endpoints whose security group admits the function's group."""
    function_group = _function_group(synthesized, package)
    admitted: set[str] = set()
    for rule in synthesized.resources("AWS::EC2::SecurityGroupIngress").values():
        properties: dict[str, Any] = rule["Properties"]
        source = properties.get("SourceSecurityGroupId", {}).get("Fn::GetAtt", [None])[0]
        target = properties["GroupId"]["Fn::GetAtt"][0]
        if source != function_group:
            continue
        for endpoint_id in ENDPOINT_SERVICES:
            if target.startswith(f"Network{endpoint_id}EndpointSecurityGroup"):
                admitted.add(endpoint_id)
    return admitted


@pytest.mark.parametrize("package", VPC_PACKAGES)
def test_a_vpc_function_reaches_only_the_endpoints_of_services_it_calls(
    synthesized: Synthesized, package: str
):
    """rotate_db and migrate log in as the database's master user and call Secrets
    Manager only (tests/support/aws_calls.py reads their code); the WAF endpoint is
    there for the API's admin block routes, the SSM one for its allowlists. Each VPC
    function's group is admitted to the endpoints of the services its code calls, and
    X-Ray's for active tracing, as the database's group admits only the functions that
    use it. Only a function that calls DynamoDB may send 443 out to an address range
    (its gateway endpoint's prefix list); the others reach AWS only through their
    endpoints."""
    called = _code_services(package)
    needed = {e for e, service in ENDPOINT_SERVICES.items() if service in called} | {"XRay"}

    admitted = _admitted_endpoints(synthesized, package)

    assert admitted == needed, (
        f"{names.function_name(package)} is admitted to {sorted(admitted)}, "
        f"its code calls through {sorted(needed)}"
    )
    group = synthesized.resources("AWS::EC2::SecurityGroup")[_function_group(synthesized, package)]
    to_ranges = [
        rule for rule in group["Properties"].get("SecurityGroupEgress", []) if "CidrIp" in rule
    ]
    to_ranges += [
        rule["Properties"]
        for rule in synthesized.resources("AWS::EC2::SecurityGroupEgress").values()
        if rule["Properties"]["GroupId"]
        == {"Fn::GetAtt": [_function_group(synthesized, package), "GroupId"]}
        and "CidrIp" in rule["Properties"]
    ]
    if "dynamodb" in called:
        assert [(r["CidrIp"], r["FromPort"], r["ToPort"]) for r in to_ranges] == [
            ("0.0.0.0/0", 443, 443)
        ]
    else:
        assert to_ranges == [], f"{names.function_name(package)} may send out: {to_ranges}"


def test_each_vpc_function_names_the_services_its_code_calls():
    """cdk/functions.py's spec is the one place naming the services whose endpoints a
    VPC function reaches: the code's calls, no more (an endpoint it never uses) and no
    fewer (a call with no route out, which hangs to its timeout in AWS only)."""
    specs = function_specs(api_reserved_concurrency=50, max_body_bytes=16384)

    named = {spec.package: set(spec.endpoint_services) for spec in specs if spec.in_vpc}

    assert set(named) == set(VPC_PACKAGES)
    assert named == {package: _code_services(package) for package in named}
    assert all(not spec.endpoint_services for spec in specs if not spec.in_vpc)
