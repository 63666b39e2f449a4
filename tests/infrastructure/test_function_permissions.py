"""Each function's execution role allows every AWS call the function's code makes.

moto checks no IAM, so the unit and integration tests pass whatever the roles say:
a missing action shows up only once deployed (the rotation roles once lacked
ListSecretVersionIds, which every rotation step calls first). Here the two sides
meet without AWS:

- What the function needs: the AWS calls of the code reachable from its handler
  (tests/support/aws_calls.py, whose docstring states the rules: lazy imports
  followed, clients and their calls found with `ast`, each call mapped to its IAM
  action through botocore's service models, Powertools utilities that call AWS
  for the code from a table), and what Lambda itself does with the role given
  the function's configuration (lambda_needs: logs, active tracing, VPC network
  interfaces, failure destinations).
- What the role allows: the synthesized template's policies of the function's
  role (the inline policies CDK's grants write, customer managed policies, AWS
  managed policies by name from AWS_MANAGED_POLICIES; any other AWS managed
  policy counts as allowing nothing). Wildcards (`dynamodb:*`, `ssm:Get*`) match
  case-insensitively, as IAM matches them.

Resources are checked here for DynamoDB only: each table's actions must be exactly
the ones cdk/detection.py::TABLE_ACTIONS lists for it (the code's calls carry no
table name). Every other call's resource (the secret, parameter, IP set, log group,
topic, queue or key it addresses), resource policies and conditions are
test_resource_grants.py's. An SCP or a permissions boundary is checked by neither;
a role with a boundary fails, so that the boundary is modelled before these tests
vouch for the role.

Calls the code makes only when a setting is missing (looking an IP set's id up by
name) are required only when the function's environment lacks it
(ENVIRONMENT_GUARDED).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

import pytest

from cdk.functions import LAMBDA_ITSELF
from functions.shared import names
from tests.infrastructure.conftest import AWS_MANAGED_POLICIES, VPC_ACTIONS, Synthesized
from tests.support import aws_calls

PACKAGES = names.FUNCTION_PACKAGES


# Code that calls AWS only when the function's environment lacks a setting: the
# unit (module.qualname) is skipped when every variable listed is set.
ENVIRONMENT_GUARDED: dict[str, tuple[str, ...]] = {
    # `_ip_set_refs`: ListIPSets by name unless the ids are given.
    "functions.shared.blocks._lookup_ip_set_id": (
        "AUTO_BLOCK_IPSET_V4_ID",
        "AUTO_BLOCK_IPSET_V6_ID",
    ),
    # `rate_limited_offenders`: ListWebACLs by name unless the id is given.
    "functions.waf_responder.offenders._web_acl_id": ("WEB_ACL_ID",),
}

# Granted by design though the code never calls them. KMS: DynamoDB, Secrets
# Manager and SNS use the platform key on the caller's behalf, and CDK's grants on
# resources encrypted with it add these. GetRandomPassword: CDK's RotationSchedule
# grants it to every rotation function, for AWS's rotation templates; the project's
# rotators make their values themselves.
GRANTED_BY_DESIGN = ("kms:*", "secretsmanager:GetRandomPassword")

# What CDK's grant methods write, where the stack still uses them. A statement
# holding all of one bundle's actions is that grant, and the bundle's actions the
# code does not call (metadata reads: DescribeSecret, GetQueueAttributes,
# GetQueueUrl) are CDK's choice, not ours: reported by the reverse test only when
# the code calls none of them. Tables and SSM parameters are granted exact actions
# instead, so no DynamoDB or SSM action is excused here.
CDK_GRANT_BUNDLES: dict[str, frozenset[str]] = {
    "Secret.grant_read": frozenset(
        {"secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"}
    ),
    "Queue.grant_send_messages": frozenset(
        {"sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"}
    ),
}

# What Lambda itself does with the execution role, by the function's configuration
# (destination or dead-letter target type -> the action that delivers to it).
DELIVERY_ACTIONS = {
    "AWS::SQS::Queue": "sqs:SendMessage",
    "AWS::SNS::Topic": "sns:Publish",
    "AWS::Lambda::Function": "lambda:InvokeFunction",
    "AWS::Events::EventBus": "events:PutEvents",
}


# --- the template side --------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...]
    not_actions: tuple[str, ...]
    conditional: bool
    source: str  # policy logical id, or `aws-managed:<name>`
    resources: tuple[Any, ...] = ()  # as the template spells them (Fn::GetAtt, Fn::Join...)

    def matches(self, action: str) -> bool:
        if self.not_actions:
            return not _matches_any(action, self.not_actions)
        return _matches_any(action, self.actions)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches_any(action: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in patterns)


def _statements(document: dict[str, Any], source: str) -> list[Statement]:
    return [
        Statement(
            effect=s["Effect"],
            actions=tuple(_list(s.get("Action", []))),
            not_actions=tuple(_list(s.get("NotAction", []))),
            conditional="Condition" in s,
            source=source,
            resources=tuple(_list(s.get("Resource", []))),
        )
        for s in _list(document["Statement"])
    ]


def _function(synthesized: Synthesized, package: str) -> dict[str, Any]:
    properties: dict[str, Any] = synthesized.template_json["Resources"][
        _function_id(synthesized, package)
    ]["Properties"]
    return properties


def _function_id(synthesized: Synthesized, package: str) -> str:
    (found,) = (
        logical_id
        for logical_id, f in synthesized.resources("AWS::Lambda::Function").items()
        if f["Properties"].get("FunctionName") == names.function_name(package)
    )
    return found


def _aws_managed_name(arn: Any) -> str | None:
    """`arn:<partition>:iam::aws:policy/service-role/X` -> X, however CDK spelled it."""
    if isinstance(arn, dict) and "Fn::Join" in arn:
        text = "".join(p if isinstance(p, str) else "" for p in arn["Fn::Join"][1])
    elif isinstance(arn, dict) and "Fn::Sub" in arn:
        text = arn["Fn::Sub"]
    elif isinstance(arn, str):
        text = arn
    else:
        return None
    if ":iam::aws:policy/" not in text:
        return None
    return str(text.rsplit("/", 1)[-1])


def role_statements(synthesized: Synthesized, role_id: str) -> list[Statement]:
    """Every policy statement that applies to the role, wherever the template puts it."""
    role = synthesized.template_json["Resources"][role_id]["Properties"]
    assert "PermissionsBoundary" not in role, f"{role_id}: model its permissions boundary here"
    found: list[Statement] = []
    for policy in role.get("Policies", []):
        found += _statements(policy["PolicyDocument"], f"{role_id}.{policy['PolicyName']}")
    for resource_type in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for logical_id, policy in synthesized.resources(resource_type).items():
            if {"Ref": role_id} in policy["Properties"].get("Roles", []):
                found += _statements(policy["Properties"]["PolicyDocument"], logical_id)
    managed = synthesized.resources("AWS::IAM::ManagedPolicy")
    for arn in role.get("ManagedPolicyArns", []):
        if isinstance(arn, dict) and arn.get("Ref") in managed:
            ref = arn["Ref"]
            found += _statements(managed[ref]["Properties"]["PolicyDocument"], ref)
            continue
        name = _aws_managed_name(arn)
        # An AWS managed policy not in the table allows nothing, as far as this test knows.
        actions = AWS_MANAGED_POLICIES.get(name or "", frozenset())
        if actions:
            found.append(
                Statement("Allow", tuple(sorted(actions)), (), False, f"aws-managed:{name}")
            )
    return found


def is_allowed(action: str, statements: list[Statement]) -> bool:
    allowed = any(s.effect == "Allow" and s.matches(action) for s in statements)
    denied = any(s.effect == "Deny" and not s.conditional and s.matches(action) for s in statements)
    return allowed and not denied


def granted_actions(statements: list[Statement]) -> dict[str, set[str]]:
    """Action -> sources, wildcards expanded against botocore's actions of the prefix."""
    granted: dict[str, set[str]] = {}
    for statement in statements:
        if statement.effect != "Allow":
            continue
        for pattern in statement.actions:
            prefix = pattern.split(":", 1)[0]
            expanded = (
                {a for a in aws_calls.actions_of_prefix(prefix) if _matches_any(a, (pattern,))}
                if "*" in pattern or "?" in pattern
                else {pattern}
            )
            for action in expanded or {pattern}:
                granted.setdefault(action, set()).add(statement.source)
    return granted


# --- what the function needs --------------------------------------------------------


def _target_type(synthesized: Synthesized, arn: Any) -> str | None:
    resources = synthesized.template_json["Resources"]
    if isinstance(arn, dict) and "Fn::GetAtt" in arn:
        return str(resources[arn["Fn::GetAtt"][0]]["Type"])
    if isinstance(arn, dict) and "Ref" in arn and arn["Ref"] in resources:
        return str(resources[arn["Ref"]]["Type"])  # an SNS topic's Ref is its ARN
    if isinstance(arn, str):
        service = arn.split(":")[2] if arn.count(":") >= 5 else ""
        return {"sqs": "AWS::SQS::Queue", "sns": "AWS::SNS::Topic"}.get(service)
    return None


def lambda_needs(synthesized: Synthesized, package: str) -> dict[str, str]:
    """Action -> why, for what Lambda does with the execution role."""
    function = _function(synthesized, package)
    needs = {
        "logs:CreateLogStream": "Lambda writes the function's logs",
        "logs:PutLogEvents": "Lambda writes the function's logs",
    }
    if function.get("TracingConfig", {}).get("Mode") == "Active":
        needs |= dict.fromkeys(
            ("xray:PutTraceSegments", "xray:PutTelemetryRecords"), "active tracing"
        )
    if "VpcConfig" in function:
        needs |= dict.fromkeys(VPC_ACTIONS, "network interfaces in the VPC")
    targets = [function.get("DeadLetterConfig", {}).get("TargetArn")]
    logical_id = _function_id(synthesized, package)
    for config in synthesized.resources("AWS::Lambda::EventInvokeConfig").values():
        if config["Properties"]["FunctionName"] == {"Ref": logical_id}:
            destinations = config["Properties"].get("DestinationConfig", {})
            targets += [d.get("Destination") for d in destinations.values()]
    for target in targets:
        if target is None:
            continue
        target_type = _target_type(synthesized, target)
        assert target_type in DELIVERY_ACTIONS, f"{package}: unknown destination {target}"
        needs[DELIVERY_ACTIONS[target_type]] = f"Lambda delivers to its {target_type}"
    return needs


def code_calls(synthesized: Synthesized, package: str) -> list[aws_calls.Call]:
    """The code's AWS calls, less the lookups its environment makes unnecessary."""
    function = _function(synthesized, package)
    environment = function.get("Environment", {}).get("Variables", {})
    return [
        call
        for call in aws_calls.reachable(function["Handler"]).calls
        if not all(v in environment for v in ENVIRONMENT_GUARDED.get(call.qualname, ("-",)))
    ]


def required_actions(synthesized: Synthesized, package: str) -> dict[str, list[str]]:
    """Action -> where it is called (module:qualname:line) or why Lambda needs it."""
    required: dict[str, list[str]] = {}
    for call in code_calls(synthesized, package):
        required.setdefault(call.action, []).append(call.where)
    for action, why in lambda_needs(synthesized, package).items():
        required.setdefault(action, []).append(why)
    return required


def _role_statements(synthesized: Synthesized, package: str) -> list[Statement]:
    return role_statements(synthesized, _function(synthesized, package)["Role"]["Fn::GetAtt"][0])


def unused_grants(
    synthesized: Synthesized, package: str
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Granted actions nothing needs: (unexplained: action -> policies,
    explained: action -> why it is granted anyway)."""
    statements = _role_statements(synthesized, package)
    needed = {a.lower() for a in required_actions(synthesized, package)}
    unexplained: dict[str, list[str]] = {}
    explained: dict[str, str] = {}
    for action, sources in granted_actions(statements).items():
        if action.lower() in needed:
            continue
        if _matches_any(action, GRANTED_BY_DESIGN):
            explained[action] = "granted by design (GRANTED_BY_DESIGN)"
        elif all(s.startswith("aws-managed:") for s in sources):
            explained[action] = f"in {', '.join(sorted(sources))}"
        elif bundle := _bundle_in_use(action, statements, needed):
            explained[action] = f"part of CDK's {bundle}"
        else:
            unexplained[action] = sorted(sources)
    return unexplained, explained


def _bundle_in_use(action: str, statements: list[Statement], needed: set[str]) -> str | None:
    """The CDK grant that put `action` in the role, if that grant is needed at all."""
    for statement in statements:
        if statement.effect != "Allow" or action not in statement.actions:
            continue
        for bundle, actions in CDK_GRANT_BUNDLES.items():
            if (
                action in actions
                and actions <= set(statement.actions)
                and any(a.lower() in needed for a in actions)
            ):
                return bundle
    return None


# --- tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("package", PACKAGES)
def test_role_allows_every_aws_call_the_function_makes(synthesized: Synthesized, package: str):
    statements = _role_statements(synthesized, package)

    missing = {
        action: where
        for action, where in required_actions(synthesized, package).items()
        if not is_allowed(action, statements)
    }

    assert not missing, f"{names.function_name(package)}'s role lacks " + "; ".join(
        f"{action} (needed at {', '.join(sorted(set(where)))})"
        for action, where in sorted(missing.items())
    )


@pytest.mark.parametrize("package", PACKAGES)
def test_role_grants_nothing_the_function_never_needs(synthesized: Synthesized, package: str):
    """The reverse, softer: a granted action that neither the code nor Lambda uses.

    Not counted: GRANTED_BY_DESIGN (KMS, GetRandomPassword), the AWS managed
    policies' actions, and the rest of a CDK grant (CDK_GRANT_BUNDLES: a secret's
    DescribeSecret, a queue's metadata reads) when the code calls at least one of
    its actions. Less certain than the test above: the analysis cannot see a call
    made through a client it does not recognise, so a failure is a question (is
    the grant still needed, or does the code reach it in a way aws_calls misses?)
    whose answer is a narrower grant or a new rule in aws_calls.
    """
    unexplained, _ = unused_grants(synthesized, package)

    assert not unexplained, f"{names.function_name(package)}'s role grants, unused: " + "; ".join(
        f"{action} (from {', '.join(sources)})" for action, sources in sorted(unexplained.items())
    )


# The table each module's DynamoDB calls address. A call names its table through a
# setting, which reading the source cannot resolve, so this says it once per module;
# a module that calls DynamoDB and is not listed fails the test below.
TABLE_OF_MODULE = {
    "functions.shared.identity.lockout": names.RATE_LIMIT_TABLE,
    "functions.shared.identity.rate_limit": names.RATE_LIMIT_TABLE,
    "functions.shared.identity.webhooks": names.WEBHOOK_NONCE_TABLE,
    "functions.shared.identity.webhook_signers": names.WEBHOOK_NONCE_TABLE,
    "functions.shared.blocks": names.BLOCK_REGISTRY_TABLE,
    # Powertools' idempotency layer (aws_calls.LIBRARY_CALLS), the responder's only.
    "aws_lambda_powertools.utilities.idempotency.persistence.dynamodb": names.IDEMPOTENCY_TABLE,
}


@pytest.mark.parametrize("package", PACKAGES)
def test_each_table_allows_the_calls_the_code_makes_on_it(synthesized: Synthesized, package: str):
    """Per table, from the code: a role may hold an action for one table and need it
    on another. The API's block and unblock claim registry rows with a conditional
    PutItem, which the role held only on the rate-limit and webhook tables: every
    POST and DELETE of /admin/blocks would have been refused in AWS, and moto, which
    checks no IAM, let every test pass."""
    from cdk.detection import TABLE_ACTIONS

    granted = TABLE_ACTIONS.get(package, {})
    missing: list[str] = []
    for call in code_calls(synthesized, package):
        if not call.action.startswith("dynamodb:"):
            continue
        module = call.where.split(":")[0]
        table = TABLE_OF_MODULE.get(module)
        assert table is not None, f"{call.action} at {call.where}: which table? (TABLE_OF_MODULE)"
        if call.action not in granted.get(table, ()):
            missing.append(f"{call.action} on {table} (at {call.where})")

    assert not missing, f"{names.function_name(package)} lacks " + "; ".join(sorted(missing))


@pytest.mark.parametrize("package", PACKAGES)
def test_each_table_is_granted_exactly_its_actions(synthesized: Synthesized, package: str):
    """Per table, not per role: the test above would pass a Scan granted on the
    rate-limit table as long as the code scans some table."""
    from cdk.detection import TABLE_ACTIONS

    table_names = {
        logical_id: table["Properties"]["TableName"]
        for logical_id, table in synthesized.resources("AWS::DynamoDB::Table").items()
    }
    granted: dict[str, set[str]] = {}

    for statement in _role_statements(synthesized, package):
        actions = {a for a in statement.actions if a.lower().startswith("dynamodb:")}
        if not actions:
            continue
        assert statement.effect == "Allow", statement
        assert statement.resources, statement
        for resource in statement.resources:
            logical_id = (
                resource.get("Fn::GetAtt", [None])[0] if isinstance(resource, dict) else None
            )
            assert logical_id in table_names, f"{package}: {sorted(actions)} on {resource}"
            granted.setdefault(table_names[logical_id], set()).update(actions)

    expected = {table: set(actions) for table, actions in TABLE_ACTIONS.get(package, {}).items()}
    assert granted == expected


def test_every_deployed_function_is_checked(synthesized: Synthesized):
    from cdk.functions import function_specs

    deployed = {
        f["Properties"]["FunctionName"]
        for f in synthesized.resources("AWS::Lambda::Function").values()
        if str(f["Properties"].get("FunctionName", "")).startswith(f"{names.PREFIX}-")
    }
    specs = {spec.package for spec in function_specs(1, 1)}

    assert specs == set(PACKAGES)
    assert deployed == {names.function_name(p) for p in PACKAGES}


# --- the analysis itself: it must keep seeing what it is meant to see ---------------


@pytest.mark.parametrize(
    ("handler", "action", "where"),
    [
        # Every rotation step starts with SecretStore.describe.
        *(
            (
                f"functions.{package}.handler.lambda_handler",
                "secretsmanager:ListSecretVersionIds",
                "functions.shared.rotation.store:SecretStore.describe",
            )
            for package in ("rotate_db", "rotate_jwt", "rotate_iam")
        ),
        # /admin/blocks: the registry, the IP sets and the protected lists (lazy imports).
        *(
            ("functions.api.handler.lambda_handler", action, "functions.shared.blocks:")
            for action in (
                "dynamodb:Scan",
                "dynamodb:BatchWriteItem",
                "wafv2:GetIPSet",
                "wafv2:UpdateIPSet",
                "wafv2:ListIPSets",
            )
        ),
        (
            "functions.api.handler.lambda_handler",
            "ssm:GetParameter",
            "aws_lambda_powertools.utilities.parameters.ssm:SSMProvider",
        ),
        # A call through a client factory's return annotation, and a library's calls.
        (
            "functions.waf_responder.handler.lambda_handler",
            "logs:StartQuery",
            "functions.waf_responder.offenders:run_insights_query",
        ),
        (
            "functions.waf_responder.handler.lambda_handler",
            "dynamodb:PutItem",
            "aws_lambda_powertools.utilities.idempotency.persistence.dynamodb:",
        ),
        (
            "functions.rotate_iam.handler.lambda_handler",
            "iam:CreateAccessKey",
            "functions.rotate_iam.access_keys:AccessKeyRotator.create_secret",
        ),
    ],
)
def test_analysis_finds_known_calls(handler: str, action: str, where: str):
    found = aws_calls.reachable(handler)

    assert any(w.startswith(where) for w in found.where(action)), (action, found.where(action))


def test_analysis_keeps_what_deployed_code_never_calls_out():
    rotate_iam = aws_calls.reachable("functions.rotate_iam.handler.lambda_handler")
    rotators = [
        aws_calls.reachable(f"functions.{p}.handler.lambda_handler")
        for p in ("rotate_db", "rotate_jwt", "rotate_iam")
    ]

    # Only the CLI starts an emergency rotation (SecretStore.mark_emergency); the
    # rotators tag only the promotion's time.
    for rotator in rotators:
        tagging = rotator.where("secretsmanager:TagResource")
        assert tagging, rotator.handler
        assert all(":SecretStore.mark_promoted:" in where for where in tagging), tagging
    # The rotators' own createSecret step is not Secrets Manager's CreateSecret.
    assert all("secretsmanager:CreateSecret" not in r.actions for r in rotators)
    # The new key's STS check signs with that key, not with the role.
    assert not any(a.startswith("sts:") for a in rotate_iam.actions)


def test_library_table_matches_the_installed_libraries():
    for symbol, (module, actions) in aws_calls.LIBRARY_CALLS.items():
        called = aws_calls.library_client_calls(module)
        for action in actions:
            # These libraries' services are named as their IAM prefixes are.
            service, operation = action.split(":")
            methods = {op: method for method, op in aws_calls.operations(service).items()}
            assert methods[operation] in called, (symbol, module, action)


def test_environment_guards_name_real_code_and_settings():
    from functions.shared.settings import ENVIRONMENT_VARIABLES

    units = {
        unit
        for package in PACKAGES
        for unit in aws_calls.reachable(f"functions.{package}.handler.lambda_handler").units
    }
    for unit, variables in ENVIRONMENT_GUARDED.items():
        assert unit in units, unit
        assert set(variables) <= set(ENVIRONMENT_VARIABLES), variables


# The only actions granted on every resource: IAM offers them no resource-level
# permission. cdk-nag's AwsSolutions-IAM5 `Resource::*` is acknowledged on each function
# role for the X-Ray pair CDK adds, and that acknowledgement would pass any other
# action on `*` as well: a secret read on every secret, say. This keeps it to these.
ACTIONS_WITHOUT_RESOURCES = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "logs:GetQueryResults",
    "logs:StopQuery",
    "secretsmanager:GetRandomPassword",
}


def grants_on_every_resource(template_json: dict[str, Any]) -> dict[str, list[str]]:
    """Action -> the policies and roles that Allow it on `*`."""
    granted: dict[str, set[str]] = {}
    for name, resource in template_json["Resources"].items():
        if resource["Type"] not in (
            "AWS::IAM::Policy",
            "AWS::IAM::ManagedPolicy",
            "AWS::IAM::Role",
        ):
            continue
        properties = resource["Properties"]
        documents = [properties["PolicyDocument"]] if "PolicyDocument" in properties else []
        documents += [policy["PolicyDocument"] for policy in properties.get("Policies", [])]
        for document in documents:
            for statement in document["Statement"]:
                targets = statement.get("Resource", [])
                targets = targets if isinstance(targets, list) else [targets]
                if statement.get("Effect") != "Allow" or "*" not in targets:
                    continue
                actions = statement["Action"]
                for action in actions if isinstance(actions, list) else [actions]:
                    if action in VPC_ACTIONS and statement.get("Condition") == LAMBDA_ITSELF:
                        continue  # Lambda's own network-interface calls, never the code's
                    granted.setdefault(action, set()).add(name)
    return {action: sorted(where) for action, where in granted.items()}


def test_only_actions_without_resource_level_permissions_are_granted_on_every_resource(
    synthesized: Synthesized,
):
    beyond = grants_on_every_resource(synthesized.template_json)
    for action in ACTIONS_WITHOUT_RESOURCES:
        beyond.pop(action, None)
    assert beyond == {}


def test_a_new_grant_on_every_resource_is_found():
    # What cdk-nag's role-wide `Resource::*` acknowledgement let through: a secret read
    # on every secret, beside the X-Ray pair the acknowledgement was written for.
    template = {
        "Resources": {
            "ApiRolePolicy": {
                "Type": "AWS::IAM::Policy",
                "Properties": {
                    "PolicyDocument": {
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                                "Resource": "*",
                            },
                            {
                                "Effect": "Allow",
                                "Action": "secretsmanager:GetSecretValue",
                                "Resource": ["*"],
                            },
                            # Lambda's network-interface calls pass only when they hold
                            # for Lambda alone, not for the function's code as well.
                            {
                                "Effect": "Allow",
                                "Action": ["ec2:DeleteNetworkInterface"],
                                "Resource": "*",
                                "Condition": LAMBDA_ITSELF,
                            },
                            {
                                "Effect": "Allow",
                                "Action": ["ec2:CreateNetworkInterface"],
                                "Resource": "*",
                            },
                        ]
                    }
                },
            }
        }
    }
    found = grants_on_every_resource(template)
    for action in ACTIONS_WITHOUT_RESOURCES:
        found.pop(action, None)
    assert found == {
        "secretsmanager:GetSecretValue": ["ApiRolePolicy"],
        "ec2:CreateNetworkInterface": ["ApiRolePolicy"],
    }
