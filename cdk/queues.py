"""Dead-letter queues, built one way: KMS-encrypted, TLS only, two weeks' retention."""

from __future__ import annotations

import jsii
from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.compliance import acknowledge
from cdk.keys import grant_key_through

# What a producer needs of a queue's key to send (SQS makes and reads data keys).
SEND_KEY_ACTIONS = ("kms:GenerateDataKey*", "kms:Decrypt")


def dead_letter_queue(
    scope: Construct, construct_id: str, *, queue_name: str, key: kms.IKey, holds: str
) -> sqs.Queue:
    """A queue that keeps what `holds` (the events a target could not handle) for on-call."""
    queue = sqs.Queue(
        scope,
        construct_id,
        queue_name=queue_name,
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=key,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )
    # A dead-letter queue of its own would only move the question one queue along.
    acknowledge(queue, "AwsSolutions-SQS3", f"This queue is the dead-letter queue of {holds}.")
    return queue


@jsii.implements(lambda_.IDestination)
class FailureQueue:
    """An asynchronous invocation's on-failure destination: `queue`, sent to with
    the function's role, its key usable only through SQS. (CDK's SqsDestination
    grants the whole key.)"""

    def __init__(self, queue: sqs.Queue) -> None:
        self._queue = queue

    def bind(
        self,
        scope: Construct,
        fn: lambda_.IFunction,
        *,
        type: lambda_.DestinationType | None = None,
    ) -> lambda_.DestinationConfig:
        fn.add_to_role_policy(
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[self._queue.queue_arn])
        )
        key = self._queue.encryption_master_key
        if key is not None:
            grant_key_through(fn, key, "sqs", SEND_KEY_ACTIONS)
        return lambda_.DestinationConfig(destination=self._queue.queue_arn)
