"""Each function may make its AWS calls on the resources those calls address, as IAM
decides it, and on no neighbouring resource of the same kind.

test_function_permissions.py checks actions, and resources for DynamoDB only. Here
every other call is taken to the resource it addresses at runtime: the function's
settings as its environment in the template makes them (settings_from_environment,
the code's own reader), the SecretId of the rotation events its schedules send,
the `masterarn` and `UserName` the secrets' templates hold, its on-failure queue.
Each (role, action, resource, request context) is then judged the way AWS judges it
in one account: the role's policies, the resource's own policy (key, topic, queue,
secret, function), an explicit Deny anywhere wins, and a KMS key is usable only
when its key policy allows the caller directly, or allows the account and the role's
policies allow the caller as well. Conditions are evaluated with IAM's operators
(an operator this file does not model fails the test rather than pass unexamined).

The key a call needs follows the resource: a secret, topic or queue encrypted with
the platform key needs the key through that service (kms:ViaService). DynamoDB and
its key are left to test_function_permissions and test_alarms_and_logs.

Not modelled: SCPs, permissions boundaries (a role with one fails), session
policies, VPC endpoint policies (test_as_aws_evaluates checks those).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pytest

from functions.shared import names
from functions.shared.inventory import INVENTORY
from functions.shared.rotation.store import EMERGENCY_TAG, PROMOTED_TAG
from functions.shared.settings import Settings, settings_from_environment
from tests.infrastructure.conftest import AWS_MANAGED_POLICIES, Synthesized

ACCOUNT = "123456789012"
REGION = "us-east-1"
SECRET_SUFFIX = "-AbCdEf"  # Secrets Manager appends six random characters to a name

PACKAGES = names.FUNCTION_PACKAGES

# AWS managed policies the stack attaches to function roles, as statements. Any other
# one fails the test: it is not known what it would allow.
AWS_MANAGED: dict[str, list[dict[str, Any]]] = {
    name: [{"Effect": "Allow", "Action": sorted(actions), "Resource": "*"}]
    for name, actions in AWS_MANAGED_POLICIES.items()
}


# --- the template, its references resolved to ARNs --------------------------------------


class Template:
    """The synthesized template with every reference resolved as CloudFormation would
    in account ACCOUNT, region REGION (physical names from the resources' own names)."""

    def __init__(self, synthesized: Synthesized):
        self.resources: dict[str, dict[str, Any]] = synthesized.template_json["Resources"]

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.resources.items()
            if resource["Type"] == resource_type
        }

    def properties(self, logical_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.resources[logical_id].get("Properties", {})
        return found

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((function, argument),) = value.items()
            if function == "Ref":
                return self._ref(argument)
            if function == "Fn::GetAtt":
                logical_id, attribute = (
                    argument if isinstance(argument, list) else argument.split(".", 1)
                )
                return self._get_att(logical_id, attribute)
            if function == "Fn::Join":
                separator, parts = argument
                return separator.join(str(self.resolve(part)) for part in parts)
            if function == "Fn::Sub" and isinstance(argument, str):
                return re.sub(r"\$\{([^}]+)\}", lambda m: self._sub(m.group(1)), argument)
            if function.startswith("Fn::"):
                raise AssertionError(f"resolve {function} before relying on it: {value}")
        return {key: self.resolve(item) for key, item in value.items()}

    def _sub(self, name: str) -> str:
        if "." in name:
            logical_id, attribute = name.split(".", 1)
            return str(self._get_att(logical_id, attribute))
        return str(self._ref(name))

    def _name(self, logical_id: str, name_property: str) -> str:
        return str(self.resolve(self.properties(logical_id).get(name_property, logical_id)))

    def _ref(self, name: str) -> str:
        pseudo = {
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": REGION,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "BabyShield",
        }
        if name in pseudo:
            return pseudo[name]
        resource_type = self.resources[name]["Type"]
        if resource_type == "AWS::SecretsManager::Secret":
            return self.secret_arn_of(name)
        if resource_type == "AWS::SecretsManager::SecretTargetAttachment":
            # CloudFormation: the Ref of an attachment is its secret's ARN.
            return str(self.resolve(self.properties(name)["SecretId"]))
        if resource_type == "AWS::SNS::Topic":
            return f"arn:aws:sns:{REGION}:{ACCOUNT}:{self._name(name, 'TopicName')}"
        if resource_type == "AWS::SQS::Queue":
            queue = self._name(name, "QueueName")
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{queue}"
        if resource_type == "AWS::Lambda::Version":
            return f"{self.resolve(self.properties(name)['FunctionName'])}:1"
        if resource_type == "AWS::ApiGateway::Stage":
            return self._name(name, "StageName")
        simple = {
            "AWS::SSM::Parameter": "Name",
            "AWS::IAM::Role": "RoleName",
            "AWS::IAM::User": "UserName",
            "AWS::Lambda::Function": "FunctionName",
            "AWS::Events::Rule": "Name",
            "AWS::DynamoDB::Table": "TableName",
            "AWS::Logs::LogGroup": "LogGroupName",
            "AWS::ApiGateway::RestApi": "-",
            "AWS::ApiGateway::Deployment": "-",
            "AWS::KMS::Key": "-",
        }
        if resource_type in simple:
            return self._name(name, simple[resource_type])
        raise AssertionError(f"resolve Ref of {resource_type} ({name}) before relying on it")

    def secret_arn_of(self, logical_id: str) -> str:
        secret = self._name(logical_id, "Name")
        return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{secret}{SECRET_SUFFIX}"

    def _get_att(self, logical_id: str, attribute: str) -> str:
        resource_type = self.resources[logical_id]["Type"]
        arns = {
            "AWS::IAM::Role": lambda: f"arn:aws:iam::{ACCOUNT}:role/{self._ref(logical_id)}",
            "AWS::IAM::User": lambda: f"arn:aws:iam::{ACCOUNT}:user/{self._ref(logical_id)}",
            "AWS::KMS::Key": lambda: f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{logical_id}",
            "AWS::DynamoDB::Table": lambda: (
                f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{self._ref(logical_id)}"
            ),
            # CloudFormation's log group Arn ends with `:*`.
            "AWS::Logs::LogGroup": lambda: (
                f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{self._ref(logical_id)}:*"
            ),
            "AWS::SQS::Queue": lambda: (
                f"arn:aws:sqs:{REGION}:{ACCOUNT}:{self._name(logical_id, 'QueueName')}"
            ),
            "AWS::CloudWatch::Alarm": lambda: (
                f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{self._name(logical_id, 'AlarmName')}"
            ),
            "AWS::Lambda::Function": lambda: (
                f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self._ref(logical_id)}"
            ),
            "AWS::Events::Rule": lambda: (
                f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{self._ref(logical_id)}"
            ),
            "AWS::WAFv2::IPSet": lambda: (
                f"arn:aws:wafv2:{REGION}:{ACCOUNT}:regional/ipset/"
                f"{self._name(logical_id, 'Name')}/{logical_id}-id"
            ),
            "AWS::WAFv2::WebACL": lambda: (
                f"arn:aws:wafv2:{REGION}:{ACCOUNT}:regional/webacl/"
                f"{self._name(logical_id, 'Name')}/{logical_id}-id"
            ),
        }
        if attribute == "Arn" and resource_type in arns:
            return arns[resource_type]()
        if attribute == "Id" and resource_type in ("AWS::WAFv2::IPSet", "AWS::WAFv2::WebACL"):
            return f"{logical_id}-id"
        if attribute == "Version" and resource_type == "AWS::Lambda::Version":
            return "1"
        if attribute == "QueueName" and resource_type == "AWS::SQS::Queue":
            return self._name(logical_id, "QueueName")
        raise AssertionError(f"resolve {resource_type}.{attribute} before relying on it")

    # --- lookups by what the code names ---------------------------------------------

    def logical_id_of(self, resource_type: str, name_property: str, name: str) -> str:
        found = [
            logical_id
            for logical_id in self.of_type(resource_type)
            if self._name(logical_id, name_property) == name
        ]
        assert len(found) == 1, f"no single {resource_type} named {name}: {found}"
        return found[0]

    @cached_property
    def secrets(self) -> dict[str, str]:
        """Secret ARN -> logical id of the secret."""
        return {self.secret_arn_of(lid): lid for lid in self.of_type("AWS::SecretsManager::Secret")}

    def secret_arn(self, secret_id: str) -> str:
        """The ARN of the secret a SecretId names (by name or ARN), as Secrets Manager
        would find it."""
        if secret_id.startswith("arn:"):
            assert secret_id in self.secrets, f"no secret in the stack has ARN {secret_id}"
            return secret_id
        logical_id = self.logical_id_of("AWS::SecretsManager::Secret", "Name", secret_id)
        return self.secret_arn_of(logical_id)

    def key_of(self, resource_arn: str) -> str | None:
        """The ARN of the customer managed key that encrypts the resource, if any."""
        for logical_id, resource in self.resources.items():
            properties = resource.get("Properties", {})
            key = {
                "AWS::SecretsManager::Secret": "KmsKeyId",  # pragma: allowlist secret
                "AWS::SNS::Topic": "KmsMasterKeyId",
                "AWS::SQS::Queue": "KmsMasterKeyId",
            }.get(resource["Type"])
            if key is None or key not in properties:
                continue
            arn = (
                self.secret_arn_of(logical_id)
                if resource["Type"] == "AWS::SecretsManager::Secret"
                else self._ref(logical_id)
                if resource["Type"] == "AWS::SNS::Topic"
                else self._get_att(logical_id, "Arn")
            )
            if arn == resource_arn:
                return str(self.resolve(properties[key]))
        return None

    def secret_template(self, secret_arn: str) -> dict[str, Any]:
        """The JSON the secret's value starts from (GenerateSecretString's template)."""
        generator = self.properties(self.secrets[secret_arn])["GenerateSecretString"]
        found: dict[str, Any] = json.loads(self.resolve(generator["SecretStringTemplate"]))
        return found

    # --- policies ---------------------------------------------------------------------

    def role_of(self, package: str) -> str:
        function_id = self.logical_id_of(
            "AWS::Lambda::Function", "FunctionName", names.function_name(package)
        )
        role_id: str = self.properties(function_id)["Role"]["Fn::GetAtt"][0]
        return role_id

    def identity_statements(self, role_arn: str) -> list[dict[str, Any]]:
        """Every statement of every policy attached to the role, resolved."""
        (role_id,) = (
            lid for lid in self.of_type("AWS::IAM::Role") if self._get_att(lid, "Arn") == role_arn
        )
        role = self.properties(role_id)
        assert "PermissionsBoundary" not in role, f"{role_id}: model its boundary here"
        statements: list[dict[str, Any]] = []
        for policy in role.get("Policies", []):
            statements += _as_list(policy["PolicyDocument"]["Statement"])
        for resource_type in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for policy in self.of_type(resource_type).values():
                if {"Ref": role_id} in policy["Properties"].get("Roles", []):
                    statements += _as_list(policy["Properties"]["PolicyDocument"]["Statement"])
        for arn in role.get("ManagedPolicyArns", []):
            if isinstance(arn, dict) and arn.get("Ref") in self.resources:
                continue  # a customer managed policy: attached through its Roles above
            name = str(self.resolve(arn)).rsplit("/", 1)[-1]
            assert name in AWS_MANAGED, f"{role_id}: model AWS managed policy {name} here"
            statements += AWS_MANAGED[name]
        resolved: list[dict[str, Any]] = self.resolve(statements)
        return resolved

    @cached_property
    def resource_policies(self) -> dict[str, list[dict[str, Any]]]:
        """Resource ARN -> the statements of its own policy (key, topic, queue, secret,
        function permissions, role trust), resolved."""
        found: dict[str, list[dict[str, Any]]] = {}

        def add(arn: str, statements: Iterable[dict[str, Any]]) -> None:
            found.setdefault(arn, []).extend(self.resolve(list(statements)))

        for lid, key in self.of_type("AWS::KMS::Key").items():
            add(self._get_att(lid, "Arn"), key["Properties"]["KeyPolicy"]["Statement"])
        for policy in self.of_type("AWS::SNS::TopicPolicy").values():
            for topic in policy["Properties"]["Topics"]:
                add(self.resolve(topic), policy["Properties"]["PolicyDocument"]["Statement"])
        for policy in self.of_type("AWS::SQS::QueuePolicy").values():
            for queue in policy["Properties"]["Queues"]:
                add(
                    self._get_att(queue["Ref"], "Arn"),
                    policy["Properties"]["PolicyDocument"]["Statement"],
                )
        for policy in self.of_type("AWS::SecretsManager::ResourcePolicy").values():
            add(
                self.resolve(policy["Properties"]["SecretId"]),
                policy["Properties"]["ResourcePolicy"]["Statement"],
            )
        for lid, role in self.of_type("AWS::IAM::Role").items():
            add(
                self._get_att(lid, "Arn"),
                role["Properties"]["AssumeRolePolicyDocument"]["Statement"],
            )
        for permission in self.of_type("AWS::Lambda::Permission").values():
            add(
                str(self.resolve(permission["Properties"]["FunctionName"])),
                [_permission_statement(permission["Properties"])],
            )
        return found


def _permission_statement(permission: dict[str, Any]) -> dict[str, Any]:
    """An AWS::Lambda::Permission as the statement Lambda adds to the function's policy."""
    principal = permission["Principal"]
    conditions: dict[str, dict[str, Any]] = {}
    if "SourceArn" in permission:
        conditions["ArnLike"] = {"AWS:SourceArn": permission["SourceArn"]}
    if "SourceAccount" in permission:
        conditions["StringEquals"] = {"AWS:SourceAccount": permission["SourceAccount"]}
    service = isinstance(principal, str) and principal.endswith(".amazonaws.com")
    return {
        "Effect": "Allow",
        "Principal": {"Service": principal} if service else {"AWS": principal},
        "Action": permission["Action"],
        "Resource": "*",
        "Condition": conditions,
    }


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- IAM's evaluation, in one account ------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    role: str | None = None  # an IAM role's ARN
    service: str | None = None  # or an AWS service principal

    def __str__(self) -> str:
        return self.role or f"service {self.service}"


@dataclass(frozen=True)
class Request:
    caller: Caller
    action: str
    resource: str
    context: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    where: str = ""  # what in the code makes the call, for the message

    def describe(self) -> str:
        context = f" with {dict(self.context)}" if self.context else ""
        return f"{self.action} on {self.resource}{context}"


def _glob(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM's wildcards: `*` any run of characters, `?` one character; nothing else."""
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def _arn_like(pattern: str, arn: str) -> bool:
    """ArnLike: each of the six colon-separated parts matched on its own."""
    pattern_parts, arn_parts = pattern.split(":", 5), arn.split(":", 5)
    if len(pattern_parts) != 6 or len(arn_parts) != 6:
        return False
    return all(_glob(p, a) for p, a in zip(pattern_parts, arn_parts, strict=True))


_MATCHERS = {
    "String": lambda expected, value: expected == value,
    "StringLike": lambda expected, value: _glob(expected, value),
    "Arn": _arn_like,
    "ArnLike": _arn_like,
    "Bool": lambda expected, value: str(expected).lower() == str(value).lower(),
}


def _condition_holds(operator: str, key: str, expected: Any, context: Mapping[str, Any]) -> bool:
    found = {k.lower(): v for k, v in context.items()}.get(key.lower())
    values: tuple[str, ...] = (
        () if found is None else found if isinstance(found, tuple) else (str(found),)
    )
    wanted = [str(e) for e in _as_list(expected)]
    if operator == "Null":
        # "true": the key must be absent from the request; "false": present.
        (absent,) = wanted
        return (found is None) == (absent.lower() == "true")
    qualifier, _, base = operator.rpartition(":")
    if base.endswith("IfExists"):
        if found is None:
            return True
        base = base.removesuffix("IfExists")
    negated = "Not" in base
    base = base.replace("Not", "")
    kind = {
        "StringEquals": "String",
        "StringLike": "StringLike",
        "ArnEquals": "Arn",
        "ArnLike": "ArnLike",
        "Bool": "Bool",
    }.get(base)
    if kind is None or qualifier not in ("", "ForAllValues", "ForAnyValue"):
        raise AssertionError(f"model condition operator {operator} before relying on it")
    match = _MATCHERS[kind]

    def one(value: str) -> bool:
        return any(match(e, value) for e in wanted)

    if qualifier == "ForAllValues":
        held = all(one(v) for v in values)  # an absent or empty key: vacuously true
        return not held if negated else held
    if qualifier == "ForAnyValue":
        held = any(one(v) for v in values)
        return not held if negated else held
    if found is None:
        # An absent key matches nothing; a negated operator then holds.
        return negated
    held = any(one(v) for v in values)
    return not held if negated else held


def _conditions_hold(statement: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    return all(
        _condition_holds(operator, key, expected, context)
        for operator, pairs in statement.get("Condition", {}).items()
        for key, expected in pairs.items()
    )


def _covers(statement: Mapping[str, Any], request: Request) -> bool:
    """Action, resource and conditions (not the principal) match the request."""
    if "NotAction" in statement:
        action_ok = not any(
            _glob(a, request.action, ignore_case=True) for a in _as_list(statement["NotAction"])
        )
    else:
        action_ok = any(
            _glob(a, request.action, ignore_case=True) for a in _as_list(statement["Action"])
        )
    if "NotResource" in statement:
        resource_ok = not any(
            _glob(r, request.resource) for r in _as_list(statement["NotResource"])
        )
    else:
        resource_ok = any(
            _glob(r, request.resource) for r in _as_list(statement.get("Resource", "*"))
        )
    return action_ok and resource_ok and _conditions_hold(statement, request.context)


def _principal_match(statement: Mapping[str, Any], caller: Caller) -> str | None:
    """ "direct" when the statement names the caller, "account" when it names the
    caller's account (root: delegation to IAM policies), else None."""
    principal = statement.get("Principal")
    if principal == "*":
        return "direct"
    if not isinstance(principal, dict):
        return None
    if caller.service is not None:
        return "direct" if caller.service in _as_list(principal.get("Service", [])) else None
    for named in _as_list(principal.get("AWS", [])):
        if named in ("*", caller.role):
            return "direct"
        if named in (ACCOUNT, f"arn:aws:iam::{ACCOUNT}:root"):
            return "account"
    return None


def evaluate(template: Template, request: Request) -> tuple[bool, str]:
    """(allowed, why) for a request in the stack's own account."""
    caller = request.caller
    identity = template.identity_statements(caller.role) if caller.role else []
    own = template.resource_policies.get(request.resource, [])
    if any(s["Effect"] == "Deny" and _covers(s, request) for s in identity):
        return False, "explicitly denied by the role's policies"
    for statement in own:
        if (
            statement["Effect"] == "Deny"
            and _principal_match(statement, caller)
            and _covers(statement, request)
        ):
            return False, f"explicitly denied by the resource's policy ({statement.get('Sid')})"
    by_resource = {
        _principal_match(s, caller) for s in own if s["Effect"] == "Allow" and _covers(s, request)
    }
    by_identity = any(s["Effect"] == "Allow" and _covers(s, request) for s in identity)
    if "direct" in by_resource:
        return True, "allowed by the resource's policy"
    if request.resource.startswith("arn:aws:kms:"):
        # A key's policy must allow the caller, or the account and then IAM as well.
        if "account" in by_resource and by_identity:
            return True, "allowed by the role, the key policy delegating to IAM"
        return False, (
            "the key policy allows the account but the role's policies do not"
            if "account" in by_resource
            else "the key policy allows neither the caller nor its account"
        )
    if by_identity:
        return True, "allowed by the role's policies"
    return False, "no statement of the role or the resource allows it"


def granted_instead(template: Template, request: Request) -> list[str]:
    """What the caller's statements (and the resource's) allow for this action."""
    shown: list[str] = []
    statements = template.identity_statements(request.caller.role) if request.caller.role else []
    statements += [
        s
        for s in template.resource_policies.get(request.resource, [])
        if _principal_match(s, request.caller)
    ]
    for statement in statements:
        if statement["Effect"] != "Allow":
            continue
        actions = _as_list(statement.get("Action", []))
        if not any(_glob(a, request.action, ignore_case=True) for a in actions):
            continue
        text = f"{_as_list(statement.get('Resource', '*'))}"
        if statement.get("Condition"):
            text += f" if {statement['Condition']}"
        shown.append(text)
    return shown or ["nothing"]


def refused_message(template: Template, package: str, refused: list[tuple[Request, str]]) -> str:
    lines = [f"{names.function_name(package)} is refused in AWS:"]
    for request, why in refused:
        lines.append(
            f"- {request.describe()} ({request.where}): {why}; the template allows "
            f"{request.action} on {'; '.join(granted_instead(template, request))}"
        )
    return "\n".join(lines)


# --- what each function addresses at runtime -----------------------------------------------


def function_settings(template: Template, package: str) -> Settings:
    """The settings the function's code reads in AWS: its environment in the template."""
    function_id = template.logical_id_of(
        "AWS::Lambda::Function", "FunctionName", names.function_name(package)
    )
    environment = template.resolve(
        template.properties(function_id).get("Environment", {}).get("Variables", {})
    )
    return settings_from_environment({**environment, "AWS_REGION": REGION})


def _through(service: str) -> dict[str, str]:
    """The request context of a KMS call a service makes for a caller of this account."""
    return {"kms:ViaService": f"{service}.{REGION}.amazonaws.com", "kms:CallerAccount": ACCOUNT}


def _key_use(
    template: Template,
    caller: Caller,
    service: str,
    resource_arn: str,
    actions: Iterable[str],
    where: str,
    context: Mapping[str, str] | None = None,
) -> list[Request]:
    """The KMS calls `service` makes with the caller's identity on the resource's key."""
    key = template.key_of(resource_arn)
    if key is None:
        return []
    extra = dict(context or {})
    if caller.role:
        extra = {**_through(service), **extra}
    return [Request(caller, action, key, extra, f"{service} for {where}") for action in actions]


def read_secret(template: Template, caller: Caller, secret_id: str, where: str) -> list[Request]:
    arn = template.secret_arn(secret_id)
    return [
        Request(caller, "secretsmanager:GetSecretValue", arn, {}, where),
        *_key_use(
            template,
            caller,
            "secretsmanager",
            arn,
            ["kms:Decrypt"],
            where,
            {"kms:EncryptionContext:SecretARN": arn},
        ),
    ]


def rotate_secret(template: Template, caller: Caller, secret_arn: str) -> list[Request]:
    """The calls of every rotation step on the secret the event names
    (functions/shared/rotation/store.py, protocol.py)."""
    store = "functions/shared/rotation/store.py::SecretStore"
    tag: dict[str, str | tuple[str, ...]] = {
        "aws:TagKeys": (PROMOTED_TAG,),
        f"aws:RequestTag/{PROMOTED_TAG}": "version@1",
    }
    return [
        Request(caller, "secretsmanager:DescribeSecret", secret_arn, {}, f"{store}.describe"),
        Request(caller, "secretsmanager:ListSecretVersionIds", secret_arn, {}, f"{store}.describe"),
        *read_secret(template, caller, secret_arn, f"{store}.read"),
        Request(caller, "secretsmanager:PutSecretValue", secret_arn, {}, f"{store}.put_pending"),
        *_key_use(
            template,
            caller,
            "secretsmanager",
            secret_arn,
            ["kms:GenerateDataKey"],
            f"{store}.put_pending",
            {"kms:EncryptionContext:SecretARN": secret_arn},
        ),
        Request(
            caller, "secretsmanager:UpdateSecretVersionStage", secret_arn, {}, f"{store}.promote"
        ),
        Request(caller, "secretsmanager:TagResource", secret_arn, tag, f"{store}.mark_promoted"),
        Request(
            caller,
            "secretsmanager:UntagResource",
            secret_arn,
            {"aws:TagKeys": (EMERGENCY_TAG,)},
            f"{store}.clear_emergency (last step of an emergency rotation)",
        ),
    ]


def rotated_by(template: Template, package: str) -> list[str]:
    """The secrets whose rotation events reach this function: SecretId of the event is
    the secret of the schedule that names the function."""
    function_arn = template.resolve(
        {
            "Fn::GetAtt": [
                template.logical_id_of(
                    "AWS::Lambda::Function", "FunctionName", names.function_name(package)
                ),
                "Arn",
            ]
        }
    )
    return sorted(
        template.resolve(schedule["Properties"]["SecretId"])
        for schedule in template.of_type("AWS::SecretsManager::RotationSchedule").values()
        if template.resolve(schedule["Properties"]["RotationLambdaARN"]) == function_arn
    )


def failure_queues(template: Template, package: str) -> list[str]:
    """The queues Lambda sends the function's failed asynchronous runs to, with its role."""
    function_id = template.logical_id_of(
        "AWS::Lambda::Function", "FunctionName", names.function_name(package)
    )
    queues = []
    for config in template.of_type("AWS::Lambda::EventInvokeConfig").values():
        if config["Properties"]["FunctionName"] != {"Ref": function_id}:
            continue
        for destination in config["Properties"].get("DestinationConfig", {}).values():
            queues.append(str(template.resolve(destination["Destination"])))
    return sorted(set(queues))


def needs(template: Template, package: str) -> list[Request]:
    """Every call the function makes in AWS, on the resource it addresses."""
    caller = Caller(role=template.resolve({"Fn::GetAtt": [template.role_of(package), "Arn"]}))
    settings = function_settings(template, package)
    found: list[Request] = [
        # Lambda writes the function's logs with its role, into its own group.
        Request(
            caller,
            action,
            f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/"
            f"{names.function_name(package)}:log-stream:2026/01/01/[$LATEST]0123",
            {},
            "Lambda, the function's logs",
        )
        for action in ("logs:CreateLogStream", "logs:PutLogEvents")
    ]
    for queue in failure_queues(template, package):
        found.append(Request(caller, "sqs:SendMessage", queue, {}, "Lambda, on-failure queue"))
        found += _key_use(
            template, caller, "sqs", queue, ["kms:GenerateDataKey", "kms:Decrypt"], "its DLQ"
        )
    for secret_arn in rotated_by(template, package):
        found += rotate_secret(template, caller, secret_arn)

    if package == "api":
        credentials = "functions/shared/db/credentials.py::fetch_secret_string"
        versions = "functions/shared/identity/secret_versions.py::load_secret_versions"
        found += read_secret(template, caller, settings.db_readonly_secret_id, credentials)
        found += read_secret(template, caller, settings.db_app_secret_id, credentials)
        found += read_secret(template, caller, settings.jwt_secret_id, f"{versions} (JWT keys)")
        found += read_secret(
            template, caller, settings.webhook_secret_id, f"{versions} (webhook secret)"
        )
        found += _protected_lists(caller, settings, "api: admin allowlist and /admin/blocks")
        found += _ip_sets(template, caller, settings, "api: POST/DELETE /admin/blocks")
    elif package == "rotate_db":
        strategies = "functions/rotate_db/strategies.py::AlternatingUsersRotator._admin_value"
        for secret_arn in rotated_by(template, package):
            master = template.secret_template(secret_arn).get("masterarn")
            if master:
                found += read_secret(template, caller, master, f"{strategies} (masterarn)")
        found += read_secret(
            template, caller, settings.db_admin_secret_id, f"{strategies} (DB_ADMIN_SECRET_ID)"
        )
    elif package == "rotate_iam":
        access_keys = "functions/rotate_iam/access_keys.py::AccessKeyRotator"
        sweep = "functions/rotate_iam/key_sweep.py::PreviousKeySweep"
        for secret_arn in rotated_by(template, package):
            user = template.secret_template(secret_arn).get("UserName")
            if not user:
                continue
            user_arn = f"arn:aws:iam::{ACCOUNT}:user/{user}"
            for action in (
                "iam:CreateAccessKey",
                "iam:DeleteAccessKey",
                "iam:GetUser",
                "iam:ListAccessKeys",
                "iam:UpdateAccessKey",
            ):
                found.append(Request(caller, action, user_arn, {}, f"{access_keys} (UserName)"))
            # The daily sweep: the labels, both values, then the previous key's status.
            for action in (
                "secretsmanager:DescribeSecret",
                "secretsmanager:ListSecretVersionIds",
                "secretsmanager:GetSecretValue",
            ):
                found.append(Request(caller, action, secret_arn, {}, sweep))
            for action in ("iam:ListAccessKeys", "iam:UpdateAccessKey"):
                found.append(Request(caller, action, user_arn, {}, f"{sweep} (UserName)"))
    elif package == "waf_responder":
        offenders = "functions/waf_responder/offenders.py"
        found += _protected_lists(caller, settings, "responder: never blocks these")
        found += _ip_sets(template, caller, settings, "functions/shared/blocks.py::sync_ip_sets")
        found.append(
            Request(
                caller,
                "wafv2:GetRateBasedStatementManagedKeys",
                f"arn:aws:wafv2:{REGION}:{ACCOUNT}:regional/webacl/"
                f"{settings.web_acl_name}/{settings.web_acl_id}",
                {},
                f"{offenders}::rate_limited_offenders",
            )
        )
        for group in (settings.waf_log_group, settings.api_log_group):
            # CloudWatch Logs authorizes StartQuery on `log-group:NAME:log-stream:`
            # (its AccessDenied messages name that ARN).
            found.append(
                Request(
                    caller,
                    "logs:StartQuery",
                    f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:log-stream:",
                    {},
                    f"{offenders}::run_insights_query",
                )
            )
        for action in ("logs:GetQueryResults", "logs:StopQuery"):
            found.append(Request(caller, action, "*", {}, f"{offenders}::run_insights_query"))
        for alarm in sorted(settings.waf_alarm_kinds):
            found.append(
                Request(
                    caller,
                    "cloudwatch:DescribeAlarms",
                    f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{alarm}",
                    {},
                    "functions/waf_responder/respond.py::recheck_alarms",
                )
            )
        topic = settings.oncall_topic_arn or "<ONCALL_TOPIC_ARN unset>"
        notify = "functions/waf_responder/notify.py::publish"
        found.append(Request(caller, "sns:Publish", topic, {}, notify))
        found += _key_use(
            template,
            caller,
            "sns",
            topic,
            ["kms:GenerateDataKey", "kms:Decrypt"],
            notify,
            {"kms:EncryptionContext:aws:sns:topicArn": topic},
        )
    elif package == "secret_age":
        for item in INVENTORY:
            arn = template.secret_arn(item.secret_name)
            for action in ("secretsmanager:DescribeSecret", "secretsmanager:ListSecretVersionIds"):
                found.append(
                    Request(caller, action, arn, {}, "functions/shared/rotation/age.py::secret_age")
                )
    elif package == "migrate":
        found += read_secret(
            template, caller, settings.db_admin_secret_id, "functions/migrate/run.py"
        )
    return found


def _protected_lists(caller: Caller, settings: Settings, where: str) -> list[Request]:
    parameters = (settings.admin_allowed_cidrs_parameter, settings.never_block_cidrs_parameter)
    assert all(parameters), f"{where}: a protected list has no parameter in AWS"
    return [
        Request(
            caller,
            "ssm:GetParameter",
            f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{parameter}",
            {},
            f"functions/shared/blocks.py::read_cidrs ({where})",
        )
        for parameter in parameters
    ]


def _ip_sets(template: Template, caller: Caller, settings: Settings, where: str) -> list[Request]:
    found = []
    for name, set_id in (
        (settings.auto_block_ipset_v4_name, settings.auto_block_ipset_v4_id),
        (settings.auto_block_ipset_v6_name, settings.auto_block_ipset_v6_id),
    ):
        assert set_id, f"{where}: {name} has no id, and ListIPSets takes no resource scoping"
        arn = f"arn:aws:wafv2:{REGION}:{ACCOUNT}:regional/ipset/{name}/{set_id}"
        for action in ("wafv2:GetIPSet", "wafv2:UpdateIPSet"):
            found.append(Request(caller, action, arn, {}, where))
    return found


def neighbours(template: Template, package: str) -> list[Request]:
    """Calls the function never makes, on resources next to the ones it uses: each must
    be refused, or a grant covers more than the code addresses."""
    caller = Caller(role=template.resolve({"Fn::GetAtt": [template.role_of(package), "Arn"]}))
    used = {(r.action, r.resource) for r in needs(template, package)}
    found: list[Request] = []
    for secret_arn in template.secrets:
        for action in (
            "secretsmanager:GetSecretValue",
            "secretsmanager:PutSecretValue",
            "secretsmanager:UpdateSecretVersionStage",
            "secretsmanager:DescribeSecret",
        ):
            # Secret.grant_read gives DescribeSecret with GetSecretValue: metadata only.
            read = ("secretsmanager:GetSecretValue", secret_arn) in used
            if (action, secret_arn) not in used and not (
                read and action == "secretsmanager:DescribeSecret"
            ):
                found.append(Request(caller, action, secret_arn, {}, "never called on it"))
        # Only `babyshield rotate --emergency` (a person's credentials) marks an
        # emergency; no role may, nor set or remove any other tag.
        for keys in ((EMERGENCY_TAG,), (PROMOTED_TAG, "owner"), ("owner",)):
            found.append(
                Request(
                    caller,
                    "secretsmanager:TagResource",
                    secret_arn,
                    {"aws:TagKeys": keys},
                    "never tags it so",
                )
            )
        for keys in ((PROMOTED_TAG,), ("project",)):
            found.append(
                Request(
                    caller,
                    "secretsmanager:UntagResource",
                    secret_arn,
                    {"aws:TagKeys": keys},
                    "never untags it so",
                )
            )
    for lid in template.of_type("AWS::KMS::Key"):
        key = template.resolve({"Fn::GetAtt": [lid, "Arn"]})
        # No function calls KMS itself: straight to KMS, every key use is refused.
        for action in ("kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt"):
            found.append(
                Request(caller, action, key, {"kms:CallerAccount": ACCOUNT}, "never calls KMS")
            )
    for lid, ip_set in template.of_type("AWS::WAFv2::IPSet").items():
        arn = template.resolve({"Fn::GetAtt": [lid, "Arn"]})
        if ("wafv2:UpdateIPSet", arn) not in used:
            # The admin allowlist sets are CDK's, never a function's to change.
            found.append(
                Request(caller, "wafv2:UpdateIPSet", arn, {}, ip_set["Properties"]["Name"])
            )
    found.append(
        Request(
            caller,
            "ssm:GetParameter",
            f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{names.SSM_PREFIX}/not-a-protected-list",
            {},
            "a sibling parameter",
        )
    )
    for group in (
        "aws-waf-logs-other",
        names.API_ACCESS_LOG_GROUP,
        "/aws/lambda/babyshield-migrate",
    ):
        found.append(
            Request(
                caller,
                "logs:StartQuery",
                f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:log-stream:",
                {},
                "another log group",
            )
        )
    found.append(
        Request(
            caller,
            "sns:Publish",
            f"arn:aws:sns:{REGION}:{ACCOUNT}:another-topic",
            {},
            "another topic",
        )
    )
    for user in ("someone-else", f"{names.PREFIX}-admin"):
        found.append(
            Request(
                caller,
                "iam:CreateAccessKey",
                f"arn:aws:iam::{ACCOUNT}:user/{user}",
                {},
                "another IAM user",
            )
        )
    return found


# --- tests -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(synthesized: Synthesized) -> Template:
    return Template(synthesized)


@pytest.mark.parametrize("package", PACKAGES)
def test_each_call_is_allowed_on_the_resource_it_addresses(stack: Template, package: str):
    requests = needs(stack, package)
    assert requests

    refused = [
        (request, why)
        for request in requests
        for allowed, why in [evaluate(stack, request)]
        if not allowed
    ]

    assert not refused, refused_message(stack, package, refused)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_grant_reaches_a_neighbouring_resource(stack: Template, package: str):
    """A grant on the wrong secret, parameter, IP set, log group, topic or user, or a
    tag condition that lets a rotator mark an emergency, shows up here."""
    allowed = [
        request.describe() for request in neighbours(stack, package) if evaluate(stack, request)[0]
    ]

    assert not allowed, f"{names.function_name(package)} may also: " + "; ".join(allowed)


def test_rotation_events_name_secrets_of_the_inventory_method(stack: Template):
    """The rotators' grants above follow the schedules; the schedules follow the inventory."""
    for package in ("rotate_db", "rotate_jwt", "rotate_iam"):
        secret_names = {
            stack.properties(stack.secrets[arn])["Name"] for arn in rotated_by(stack, package)
        }
        assert secret_names == {i.secret_name for i in INVENTORY if i.method == package}


def test_services_may_deliver_where_the_stack_sends_them(stack: Template):
    """The resource policies AWS services need: Secrets Manager invoking each rotation
    function for its secret, EventBridge invoking its Lambda targets and dead-lettering
    into their queues (and their key), CloudWatch publishing each alarm to on-call (and
    its key), the secret-read alerts publishing through their role, API Gateway invoking
    the API."""
    requests: list[Request] = []
    secretsmanager = Caller(service="secretsmanager.amazonaws.com")
    for schedule in stack.of_type("AWS::SecretsManager::RotationSchedule").values():
        secret = stack.resolve(schedule["Properties"]["SecretId"])
        requests.append(
            Request(
                secretsmanager,
                "lambda:InvokeFunction",
                stack.resolve(schedule["Properties"]["RotationLambdaARN"]),
                {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": secret},
                f"rotation of {secret}",
            )
        )
    events = Caller(service="events.amazonaws.com")
    for lid, rule in stack.of_type("AWS::Events::Rule").items():
        rule_arn = stack.resolve({"Fn::GetAtt": [lid, "Arn"]})
        source = {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": rule_arn}
        for target in rule["Properties"]["Targets"]:
            target_arn = stack.resolve(target["Arn"])
            if "RoleArn" in target:
                role = stack.resolve(target["RoleArn"])
                requests.append(Request(events, "sts:AssumeRole", role, source, rule_arn))
                delegate = Caller(role=role)
            else:
                delegate = events
            if target_arn.startswith("arn:aws:lambda:"):
                requests.append(
                    Request(delegate, "lambda:InvokeFunction", target_arn, source, rule_arn)
                )
            elif target_arn.startswith("arn:aws:sns:"):
                requests.append(Request(delegate, "sns:Publish", target_arn, source, rule_arn))
                requests += _key_use(
                    stack,
                    delegate,
                    "sns",
                    target_arn,
                    ["kms:GenerateDataKey", "kms:Decrypt"],
                    rule_arn,
                    source if delegate.service else None,
                )
            else:
                raise AssertionError(f"{lid}: model delivery to {target_arn}")
            if "DeadLetterConfig" in target:
                queue = stack.resolve(target["DeadLetterConfig"]["Arn"])
                requests.append(Request(events, "sqs:SendMessage", queue, source, rule_arn))
                requests += _key_use(
                    stack,
                    events,
                    "sqs",
                    queue,
                    ["kms:GenerateDataKey", "kms:Decrypt"],
                    f"{rule_arn} dead letters",
                    source,
                )
    cloudwatch = Caller(service="cloudwatch.amazonaws.com")
    for lid, alarm in stack.of_type("AWS::CloudWatch::Alarm").items():
        alarm_arn = stack.resolve({"Fn::GetAtt": [lid, "Arn"]})
        source = {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": alarm_arn}
        for action in stack.resolve(alarm["Properties"].get("AlarmActions", [])):
            assert action.startswith("arn:aws:sns:"), f"{lid}: model alarm action {action}"
            requests.append(Request(cloudwatch, "sns:Publish", action, source, alarm_arn))
            requests += _key_use(
                stack,
                cloudwatch,
                "sns",
                action,
                ["kms:GenerateDataKey", "kms:Decrypt"],
                alarm_arn,
                source,
            )
    apigateway = Caller(service="apigateway.amazonaws.com")
    (stage_id,) = stack.of_type("AWS::ApiGateway::Stage")
    (api_id,) = stack.of_type("AWS::ApiGateway::RestApi")
    api_function = stack.resolve(
        {
            "Fn::GetAtt": [
                stack.logical_id_of(
                    "AWS::Lambda::Function", "FunctionName", names.function_name("api")
                ),
                "Arn",
            ]
        }
    )
    for method, path in (("GET", ""), ("GET", "recalls"), ("POST", "admin/blocks")):
        source_arn = (
            f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{stack.resolve({'Ref': api_id})}/"
            f"{stack.resolve({'Ref': stage_id})}/{method}/{path}"
        )
        requests.append(
            Request(
                apigateway,
                "lambda:InvokeFunction",
                api_function,
                {"aws:SourceArn": source_arn, "aws:SourceAccount": ACCOUNT},
                f"{method} /{path}",
            )
        )
    assert len(requests) > 20

    refused = [
        f"{request.caller}: {request.describe()} ({request.where}): {why}"
        for request in requests
        for allowed, why in [evaluate(stack, request)]
        if not allowed
    ]

    assert not refused, "\n".join(refused)


def test_waf_logs_into_a_group_of_the_stack_named_for_waf(stack: Template):
    """WAF delivers only to a log group whose name starts with aws-waf-logs-, named by
    its ARN without CloudFormation's trailing `:*`."""
    (logging,) = stack.of_type("AWS::WAFv2::LoggingConfiguration").values()
    (destination,) = stack.resolve(logging["Properties"]["LogDestinationConfigs"])
    prefix = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:"
    assert destination.startswith(prefix)
    group = destination.removeprefix(prefix)

    assert group.startswith("aws-waf-logs-")
    assert not group.endswith(":*")
    group_id = stack.logical_id_of("AWS::Logs::LogGroup", "LogGroupName", group)
    assert group_id in logging.get("DependsOn", [])


# Actions on a topic besides Publish: a subscription, its attributes, its policy, the topic.
TOPIC_ACTIONS = (
    "sns:Publish",
    "sns:Subscribe",
    "sns:ConfirmSubscription",
    "sns:SetTopicAttributes",
    "sns:GetTopicAttributes",
    "sns:AddPermission",
    "sns:DeleteTopic",
    "sns:ListSubscriptionsByTopic",
)


def test_every_topic_takes_requests_over_tls_only(stack: Template):
    """The on-call topic is "TLS only" (docs/INFRASTRUCTURE.md). CDK's `enforce_ssl`
    denies plain HTTP for sns:Publish alone: over HTTP a caller could still subscribe an
    address of its own to every page, read or change the topic's attributes and policy.
    Each action without aws:SecureTransport must meet the topic's own explicit deny,
    whoever asks (a role of the stack, an AWS service); over TLS none applies."""
    callers = [
        Caller(role=stack.resolve({"Fn::GetAtt": [stack.role_of("waf_responder"), "Arn"]})),
        Caller(service="cloudwatch.amazonaws.com"),
    ]
    topics = [stack.resolve({"Ref": lid}) for lid in stack.of_type("AWS::SNS::Topic")]
    assert topics

    def denied(request: Request) -> bool:
        return any(
            statement["Effect"] == "Deny"
            and _principal_match(statement, request.caller)
            and _covers(statement, request)
            for statement in stack.resource_policies.get(request.resource, [])
        )

    plain_http = [
        request.describe()
        for topic in topics
        for caller in callers
        for action in TOPIC_ACTIONS
        if not denied(request := Request(caller, action, topic, {"aws:SecureTransport": "false"}))
    ]
    over_tls = [
        request.describe()
        for topic in topics
        for caller in callers
        for action in TOPIC_ACTIONS
        if denied(request := Request(caller, action, topic, {"aws:SecureTransport": "true"}))
    ]

    assert not plain_http, "taken over plain HTTP: " + "; ".join(plain_http)
    assert not over_tls, "refused over TLS: " + "; ".join(over_tls)


# --- the evaluation itself: it must refuse what IAM refuses --------------------------------


def test_evaluation_follows_iams_rules(stack: Template):
    role = stack.resolve({"Fn::GetAtt": [stack.role_of("waf_responder"), "Arn"]})
    caller = Caller(role=role)
    waf_group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{names.WAF_LOG_GROUP}"
    # A log group's own ARN is not the one StartQuery is authorized on; `NAME:*` covers it.
    statement = {"Effect": "Allow", "Action": "logs:StartQuery", "Resource": waf_group}
    query = Request(caller, "logs:StartQuery", f"{waf_group}:log-stream:")
    assert not _covers(statement, query)
    assert _covers({**statement, "Resource": f"{waf_group}:*"}, query)
    # ForAllValues: one key outside the list refuses; ArnNotLike on an absent key holds.
    tagging = "secretsmanager:TagResource"
    tag = {
        "Effect": "Allow",
        "Action": tagging,
        "Resource": "*",
        "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": [PROMOTED_TAG]}},
    }
    secret = next(iter(stack.secrets))
    assert _covers(tag, Request(caller, tagging, secret, {"aws:TagKeys": (PROMOTED_TAG,)}))
    assert not _covers(tag, Request(caller, tagging, secret, {"aws:TagKeys": (PROMOTED_TAG, "x")}))
    assert _condition_holds("ArnNotLike", "aws:SourceArn", "arn:aws:events:*:*:rule/x", {})
    # Null: "true" holds only where the request carries no such key.
    function_arn = {"lambda:SourceFunctionArn": "arn:aws:lambda:us-east-1:1:function:f"}
    assert _condition_holds("Null", "lambda:SourceFunctionArn", "true", {})
    assert not _condition_holds("Null", "lambda:SourceFunctionArn", "true", function_arn)
    assert _condition_holds("Null", "lambda:SourceFunctionArn", "false", function_arn)
    # The key: a role the key policy does not name needs its own statement too.
    key = stack.resolve({"Fn::GetAtt": [next(iter(stack.of_type("AWS::KMS::Key"))), "Arn"]})
    stranger = Caller(role=stack.resolve({"Fn::GetAtt": [stack.role_of("secret_age"), "Arn"]}))
    assert not evaluate(stack, Request(stranger, "kms:Decrypt", key, _through("secretsmanager")))[0]
    with pytest.raises(AssertionError, match="model condition operator"):
        _condition_holds("NumericLessThan", "aws:MultiFactorAuthAge", "3600", {})
