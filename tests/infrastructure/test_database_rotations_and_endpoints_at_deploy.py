"""The database secrets' first rotations and the VPC's endpoints, judged as AWS would
run them.

Reads the session's one synth (conftest.py::synthesized); the code's AWS calls come
from tests/support/aws_calls.py, the same static reading the permission tests use.
"""

from __future__ import annotations

from typing import Any

from functions.shared import names
from functions.shared.inventory import INVENTORY
from tests.infrastructure.conftest import Synthesized
from tests.support import aws_calls

# --- helpers ---------------------------------------------------------------------------


def _ref_or_getatt(value: Any) -> str | None:
    """The logical id a `Ref` or `Fn::GetAtt` value points at."""
    if isinstance(value, dict):
        if isinstance(value.get("Ref"), str):
            return str(value["Ref"])
        target = value.get("Fn::GetAtt")
        if target is not None:
            return str(target[0] if isinstance(target, list) else str(target).split(".")[0])
    return None


def _schedules_by_secret_name(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    """Secrets Manager name -> its RotationSchedule resource (through attachments)."""
    resources = synthesized.template_json["Resources"]
    found: dict[str, dict[str, Any]] = {}
    for schedule in synthesized.resources("AWS::SecretsManager::RotationSchedule").values():
        target = resources[_ref_or_getatt(schedule["Properties"]["SecretId"]) or ""]
        if target["Type"] == "AWS::SecretsManager::SecretTargetAttachment":
            target = resources[_ref_or_getatt(target["Properties"]["SecretId"]) or ""]
        found[str(target["Properties"]["Name"])] = schedule
    return found


def _rotates_on_creation(schedule: dict[str, Any]) -> bool:
    # CloudFormation's default for RotateImmediatelyOnUpdate is true: the schedule's
    # creation (and any later change of it) starts a rotation at once.
    return schedule["Properties"].get("RotateImmediatelyOnUpdate", True) is not False


# --- deploy order: the first rotations of the database secrets ---------------------------


def test_the_first_tier_rotations_do_not_race_the_first_admin_rotation(
    synthesized: Synthesized,
):
    """On a fresh deploy the three database schedules are created together, right
    after the migration. The tiers' first rotation moves db-readonly and db-app off
    the NOLOGIN group role onto a login, and every one of its steps logs in as the
    admin; the admin's password is fresh from the same deploy, so its first rotation
    waits for its window instead of changing that password under them."""
    schedules = _schedules_by_secret_name(synthesized)
    tiers = [spec.secret_name for spec in INVENTORY if spec.name in ("db-readonly", "db-app")]
    admin = names.secret_name("db-admin")

    # The tiers must rotate at deploy: their bootstrap value names the group role.
    assert all(_rotates_on_creation(schedules[name]) for name in tiers)
    assert not _rotates_on_creation(schedules[admin]), (
        f"{admin} starts its first rotation at deploy, together with {tiers}, whose "
        "steps log in with the admin secret's AWSCURRENT"
    )


# --- network: every AWS service a function in the VPC calls is reachable ----------------

# The VPC endpoint service name of an IAM action prefix, where they differ.
_ENDPOINT_SERVICE = {"cloudwatch": "monitoring"}


def _endpoint_service(endpoint: dict[str, Any]) -> str:
    name = endpoint["Properties"]["ServiceName"]
    if isinstance(name, dict):  # {"Fn::Join": ["", ["com.amazonaws.", {"Ref": ...}, ".x"]]}
        name = "".join(part for part in name["Fn::Join"][1] if isinstance(part, str))
    return str(name).rsplit(".", 1)[-1]


def _function_security_groups(function: dict[str, Any]) -> set[str]:
    config = function["Properties"].get("VpcConfig", {})
    return {_ref_or_getatt(group) or "" for group in config.get("SecurityGroupIds", [])}


def _egress_443(synthesized: Synthesized, group: str, to_group: str | None) -> bool:
    """Whether `group` may open TCP 443 to `to_group` (None: anywhere, the gateway
    endpoint's prefix list being unknown before deploy)."""

    def covers(rule: dict[str, Any]) -> bool:
        if rule.get("IpProtocol") not in ("tcp", "-1"):
            return False
        if rule.get("IpProtocol") == "tcp" and not (
            int(rule["FromPort"]) <= 443 <= int(rule["ToPort"])
        ):
            return False
        if rule.get("CidrIp") == "0.0.0.0/0":
            return True
        destination = _ref_or_getatt(rule.get("DestinationSecurityGroupId"))
        return to_group is not None and destination == to_group

    inline = synthesized.template_json["Resources"][group]["Properties"].get(
        "SecurityGroupEgress", []
    )
    separate = [
        rule["Properties"]
        for rule in synthesized.resources("AWS::EC2::SecurityGroupEgress").values()
        if _ref_or_getatt(rule["Properties"]["GroupId"]) == group
    ]
    return any(covers(rule) for rule in [*inline, *separate])


def _ingress_443(synthesized: Synthesized, group: str, from_group: str) -> bool:
    for rule in synthesized.resources("AWS::EC2::SecurityGroupIngress").values():
        properties = rule["Properties"]
        if (
            _ref_or_getatt(properties["GroupId"]) == group
            and _ref_or_getatt(properties.get("SourceSecurityGroupId")) == from_group
            and properties.get("IpProtocol") == "tcp"
            and int(properties["FromPort"]) <= 443 <= int(properties["ToPort"])
        ):
            return True
    return False


def test_every_service_a_function_in_the_vpc_calls_has_a_reachable_endpoint(
    synthesized: Synthesized,
):
    """The VPC has no NAT and no internet gateway, so an AWS
    service a function in it calls without an endpoint is unreachable: the call
    hangs to its timeout in AWS only (locally and under moto it works). For every
    service the function's code calls (read from its source), there must be an
    endpoint of that service in the VPC, and for an interface endpoint the function's
    security group must reach it on 443 and the endpoint's group admit it."""
    endpoints: dict[str, list[dict[str, Any]]] = {}
    for endpoint in synthesized.resources("AWS::EC2::VPCEndpoint").values():
        endpoints.setdefault(_endpoint_service(endpoint), []).append(endpoint)

    in_vpc = {
        logical_id: function
        for logical_id, function in synthesized.resources("AWS::Lambda::Function").items()
        if function["Properties"].get("VpcConfig")
        and str(function["Properties"]["Handler"]).startswith("functions.")
    }
    assert {f["Properties"]["FunctionName"] for f in in_vpc.values()} >= {
        names.function_name(p) for p in ("api", "rotate_db", "migrate")
    }

    problems: list[str] = []
    for function in in_vpc.values():
        name = function["Properties"]["FunctionName"]
        groups = _function_security_groups(function)
        prefixes = {
            call.action.split(":")[0]
            for call in aws_calls.reachable(function["Properties"]["Handler"]).calls
        }
        assert prefixes, name
        for prefix in sorted(prefixes):
            service = _ENDPOINT_SERVICE.get(prefix, prefix)
            found = endpoints.get(service, [])
            if not found:
                problems.append(f"{name} calls {prefix}: no {service} endpoint in the VPC")
                continue
            endpoint = found[0]["Properties"]
            if endpoint.get("VpcEndpointType") == "Gateway":
                if not any(_egress_443(synthesized, g, None) for g in groups):
                    problems.append(f"{name} cannot send 443 to the {service} gateway endpoint")
                continue
            endpoint_groups = {_ref_or_getatt(g) or "" for g in endpoint["SecurityGroupIds"]}
            if not any(
                _egress_443(synthesized, g, eg) and _ingress_443(synthesized, eg, g)
                for g in groups
                for eg in endpoint_groups
            ):
                problems.append(f"{name} cannot reach the {service} endpoint on 443")

    assert not problems, problems
