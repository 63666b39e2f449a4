"""The platform's customer-managed KMS key."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from functions.shared import names


class Keys(Construct):
    """One key for secrets, tables, queues, log groups, the topic and the trail.

    Rotated yearly by KMS. Services that write with it on their own behalf
    (CloudWatch Logs, alarms and EventBridge publishing to SNS, CloudTrail) get
    key-policy statements scoped to this account.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.key = kms.Key(
            self,
            "Key",
            alias=f"alias/{names.PREFIX}",
            description="BabyShield: secrets, DynamoDB, SQS, SNS, CloudWatch Logs, CloudTrail",
            enable_key_rotation=True,
            rotation_period=Duration.days(365),
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchLogsOfThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        # A log group's ARN puts a colon before its name (log-group:NAME),
                        # and ArnLike matches part by part: the slash form matches none.
                        "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                            service="logs",
                            resource="log-group",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )
        for service in ("cloudwatch.amazonaws.com", "events.amazonaws.com"):
            self.key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=f"PublishToEncryptedTargets{service.split('.')[0].title()}",
                    principals=[iam.ServicePrincipal(service)],
                    actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                    resources=["*"],
                    conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
                )
            )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailOfThisAccount",
                principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")],
                actions=["kms:GenerateDataKey*"],
                resources=["*"],
                conditions={
                    "StringLike": {
                        "kms:EncryptionContext:aws:cloudtrail:arn": stack.format_arn(
                            service="cloudtrail", resource="trail", resource_name="*"
                        )
                    },
                    "StringEquals": {"aws:SourceAccount": stack.account},
                },
            )
        )
        # DescribeKey carries no encryption context: a statement conditioned on one
        # never grants it, and CloudTrail checks the key with it.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailDescribesTheKey",
                principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")],
                actions=["kms:DescribeKey"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )


def grant_key_through(
    grantee: iam.IGrantable, key: kms.IKey, service: str, actions: Sequence[str]
) -> None:
    """Let `grantee` (a function, or a role a service assumes) use `key` only in calls
    made through `service` (`sqs`, `sns`, `dynamodb`): the key encrypts every secret,
    queue and log group, and no principal of the stack calls KMS itself, so a grant
    without kms:ViaService would let the role's credentials decrypt anything made
    under it."""
    grantee.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(
            actions=list(actions),
            resources=[key.key_arn],
            conditions={
                "StringEquals": {
                    "kms:ViaService": f"{service}.{Stack.of(key).region}.amazonaws.com"
                }
            },
        )
    )
