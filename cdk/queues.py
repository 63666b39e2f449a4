"""Dead-letter queues, built one way: KMS-encrypted, TLS only, two weeks' retention."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.compliance import acknowledge


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
