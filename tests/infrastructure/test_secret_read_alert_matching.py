"""The unexpected-secret-read rules, evaluated against CloudTrail events as EventBridge
would: which reads page on-call and which do not.

The evaluator is EventBridge's own rule matching in the moto server: the synthesized
pattern (intrinsics resolved for one account) becomes a rule with an SQS queue as its
target, each sample event is put on the bus, and a message in the queue is a page.
moto's TestEventPattern is a stub that answers nothing, so it cannot be used.

CloudTrail records a call an AWS service makes on a principal's behalf with that
principal's identity and `userIdentity.invokedBy` naming the service. CloudFormation
deploys this stack as CDK's bootstrap execution role and, so doing, reads secrets
(the RDS master password's `{{resolve:secretsmanager:...}}`, the secret target
attachments): those reads must not page; the same role calling GetSecretValue
itself, or CloudFormation reading for anyone else, must.
"""

from __future__ import annotations

import json
import re
from typing import Any

import boto3
import pytest

from functions.shared import names
from functions.shared.inventory import INVENTORY
from tests.infrastructure.conftest import Synthesized

ACCOUNT = "123456789012"
REGION = "us-east-1"
PSEUDO = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": "aws"}
# CDK's bootstrap role that CloudFormation deploys with (qualifier hnb659fds).
DEPLOY_ROLE = f"cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}"
DEPLOY_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{DEPLOY_ROLE}"
CLOUDFORMATION = "cloudformation.amazonaws.com"


# --- the rule, resolved for one account -----------------------------------------------


def _role_arn(logical_id: str) -> str:
    # The stack's roles have generated names; the logical id stands in for one.
    return f"arn:aws:iam::{ACCOUNT}:role/{logical_id}"


def _resolve(value: Any) -> Any:
    """A template value with its intrinsics filled in for ACCOUNT and REGION."""
    if isinstance(value, list):
        return [_resolve(item) for item in value]
    if not isinstance(value, dict):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(str(_resolve(part)) for part in parts)
    if "Ref" in value:
        return PSEUDO[value["Ref"]]
    if "Fn::GetAtt" in value:
        logical_id, attribute = value["Fn::GetAtt"]
        assert attribute == "Arn", value
        return _role_arn(logical_id)
    if "Fn::Sub" in value:
        text = value["Fn::Sub"]
        assert isinstance(text, str), value
        resolved = re.sub(r"\$\{(AWS::\w+)\}", lambda m: PSEUDO[m.group(1)], text)
        assert "${" not in resolved, resolved
        return resolved
    return {key: _resolve(item) for key, item in value.items()}


def _pattern(synthesized: Synthesized, secret: str) -> dict[str, Any]:
    rule_name = f"{names.SECRET_READ_RULE}-{secret}"
    (rule,) = (
        r["Properties"]
        for r in synthesized.resources("AWS::Events::Rule").values()
        if r["Properties"].get("Name") == rule_name
    )
    pattern: dict[str, Any] = _resolve(rule["EventPattern"])
    return pattern


def _function_role_arn(synthesized: Synthesized, package: str) -> str:
    (function,) = (
        f["Properties"]
        for f in synthesized.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("FunctionName") == names.function_name(package)
    )
    arn: str = _resolve(function["Role"])
    return arn


# --- sample CloudTrail events ----------------------------------------------------------


def _secret_arn(secret: str) -> str:
    return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{names.secret_name(secret)}-AbCdEf"


def _read(secret: str, identity: dict[str, Any], *, via: str | None = None) -> dict[str, Any]:
    """The detail of a CloudTrail GetSecretValue event; `via`: the AWS service that
    made the call on the identity's behalf (its `invokedBy`, source and user agent)."""
    user_identity = dict(identity)
    if via is not None:
        user_identity["invokedBy"] = via
    return {
        "eventVersion": "1.08",
        "userIdentity": user_identity,
        "eventTime": "2026-01-05T10:00:00Z",
        "eventSource": "secretsmanager.amazonaws.com",
        "eventName": "GetSecretValue",
        "awsRegion": REGION,
        "sourceIPAddress": via or "203.0.113.9",
        "userAgent": via or "aws-cli/2.15.0",
        "requestParameters": {"secretId": _secret_arn(secret)},
        "responseElements": None,
        "readOnly": True,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
    }


def _assumed_role(role_arn: str, session: str) -> dict[str, Any]:
    role_name = role_arn.rsplit("/", 1)[1]
    return {
        "type": "AssumedRole",
        "principalId": f"AROAEXAMPLEID:{session}",
        "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/{session}",
        "accountId": ACCOUNT,
        "accessKeyId": "ASIAEXAMPLEKEY",
        "sessionContext": {
            "sessionIssuer": {
                "type": "Role",
                "principalId": "AROAEXAMPLEID",
                "arn": role_arn,
                "accountId": ACCOUNT,
                "userName": role_name,
            },
            "attributes": {"creationDate": "2026-01-05T09:59:00Z", "mfaAuthenticated": "false"},
        },
    }


IAM_USER = {
    "type": "IAMUser",
    "principalId": "AIDAEXAMPLEID",
    "arn": f"arn:aws:iam::{ACCOUNT}:user/alice",
    "accountId": ACCOUNT,
    "accessKeyId": "AKIAEXAMPLEKEY",
    "userName": "alice",
}
ROOT = {
    "type": "Root",
    "principalId": ACCOUNT,
    "arn": f"arn:aws:iam::{ACCOUNT}:root",
    "accountId": ACCOUNT,
    "accessKeyId": "ASIAEXAMPLEKEY",
}
UNKNOWN_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/someone-elses-role"


# --- the evaluator ---------------------------------------------------------------------


class Bus:
    """The rule of one secret on the bus, an SQS queue as its target."""

    def __init__(self, synthesized: Synthesized, secret: str) -> None:
        self._secret = secret
        pattern = _pattern(synthesized, secret)
        self._events = boto3.client("events")
        self._sqs = boto3.client("sqs")
        self._queue = self._sqs.create_queue(QueueName="pages")["QueueUrl"]
        queue_arn = self._sqs.get_queue_attributes(
            QueueUrl=self._queue, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        self._events.put_rule(Name="under-test", EventPattern=json.dumps(pattern))
        self._events.put_targets(Rule="under-test", Targets=[{"Id": "pages", "Arn": queue_arn}])

    def pages(self, detail: dict[str, Any]) -> bool:
        """Whether the rule matches a CloudTrail event with this detail."""
        answer = self._events.put_events(
            Entries=[
                {
                    "Source": "aws.secretsmanager",
                    "DetailType": "AWS API Call via CloudTrail",
                    "Detail": json.dumps(detail),
                }
            ]
        )
        assert answer["FailedEntryCount"] == 0, answer
        messages = self._sqs.receive_message(
            QueueUrl=self._queue, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        for message in messages:
            self._sqs.delete_message(QueueUrl=self._queue, ReceiptHandle=message["ReceiptHandle"])
        assert len(messages) <= 1, messages
        return bool(messages)

    def quiet_for(self, detail: dict[str, Any]) -> bool:
        """No page for `detail`, checked by a bus that does page: the root user's
        read of the rule's secret right after it must arrive."""
        quiet = not self.pages(detail)
        assert self.pages(_read(self._secret, ROOT)), "the evaluator delivered no page at all"
        return quiet


@pytest.fixture
def db_admin(aws: str, synthesized: Synthesized) -> Bus:
    """The rule for the admin secret, whose master password CloudFormation resolves."""
    return Bus(synthesized, "db-admin")


# --- the deploy ------------------------------------------------------------------------


@pytest.mark.parametrize("secret", [spec.name for spec in INVENTORY])
def test_a_read_cloudformation_makes_for_the_deploy_pages_no_one(
    aws: str, synthesized: Synthesized, secret: str
):
    """Given the deploy: CloudFormation resolves `{{resolve:secretsmanager:...}}` and
    completes the secret target attachments as CDK's execution role.
    When it reads the secret, Then no alert: every deploy paged on-call before."""
    bus = Bus(synthesized, secret)
    deploy = _read(secret, _assumed_role(DEPLOY_ROLE_ARN, "AWSCloudFormation"), via=CLOUDFORMATION)

    assert bus.quiet_for(deploy)


@pytest.mark.parametrize("secret", [spec.name for spec in INVENTORY])
def test_the_deploy_role_reading_a_secret_itself_pages(
    aws: str, synthesized: Synthesized, secret: str
):
    """The exemption is CloudFormation's reading, not the role: a session of the
    execution role calling GetSecretValue directly (no invokedBy) still pages."""
    bus = Bus(synthesized, secret)

    assert bus.pages(_read(secret, _assumed_role(DEPLOY_ROLE_ARN, "someone")))


# --- what cannot hide behind the exemption --------------------------------------------


def test_cloudformation_reading_for_another_principal_pages(db_admin: Bus):
    """Anyone who may create a stack could have CloudFormation resolve the secret
    into a resource they read: only the deploy's own reads are exempt."""
    for identity in (_assumed_role(UNKNOWN_ROLE_ARN, "AWSCloudFormation"), IAM_USER, ROOT):
        assert db_admin.pages(_read("db-admin", identity, via=CLOUDFORMATION)), identity


@pytest.mark.parametrize(
    "service",
    [
        "codebuild.amazonaws.com",
        "ecs-tasks.amazonaws.com",
        "CloudFormation.amazonaws.com",
        "cloudformation.amazonaws.com.example.org",
        "AWS Internal",
    ],
)
def test_the_deploy_role_through_any_other_service_pages(db_admin: Bus, service: str):
    """Only CloudFormation deploys this stack; another service reading with the
    deploy role's session is not the deploy, and invokedBy is matched exactly."""
    event = _read("db-admin", _assumed_role(DEPLOY_ROLE_ARN, "AWSCloudFormation"), via=service)

    assert db_admin.pages(event)


# --- every read that paged before still pages ----------------------------------------


def test_a_reader_function_pages_no_one(db_admin: Bus, synthesized: Synthesized):
    migrate = _function_role_arn(synthesized, "migrate")
    rotate_db = _function_role_arn(synthesized, "rotate_db")

    for role in (migrate, rotate_db):
        read = _read("db-admin", _assumed_role(role, "babyshield-function"))
        assert db_admin.quiet_for(read), role


def test_a_function_that_is_not_a_reader_pages(db_admin: Bus, synthesized: Synthesized):
    api = _function_role_arn(synthesized, "api")

    assert db_admin.pages(_read("db-admin", _assumed_role(api, "babyshield-api")))


def test_an_unknown_role_pages(db_admin: Bus):
    assert db_admin.pages(_read("db-admin", _assumed_role(UNKNOWN_ROLE_ARN, "laptop")))


def test_an_iam_user_pages(db_admin: Bus):
    """An IAM user's event carries no sessionContext at all."""
    assert "sessionContext" not in IAM_USER
    assert db_admin.pages(_read("db-admin", IAM_USER))


def test_an_iam_user_in_a_console_session_pages(db_admin: Bus):
    """A console session has a sessionContext, without a session issuer."""
    console = {**IAM_USER, "sessionContext": {"attributes": {"mfaAuthenticated": "true"}}}

    assert db_admin.pages(_read("db-admin", console))


def test_the_root_user_pages(db_admin: Bus):
    assert db_admin.pages(_read("db-admin", ROOT))


def test_a_read_of_the_secret_by_name_pages_too(db_admin: Bus):
    read = _read("db-admin", _assumed_role(UNKNOWN_ROLE_ARN, "laptop"))
    read["requestParameters"] = {"secretId": names.secret_name("db-admin")}

    assert db_admin.pages(read)


def test_a_read_of_another_secret_is_not_this_rules(db_admin: Bus):
    read = _read("db-app", _assumed_role(UNKNOWN_ROLE_ARN, "laptop"))

    assert db_admin.quiet_for(read)
