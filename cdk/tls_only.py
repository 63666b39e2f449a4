"""TLS only, for every action on a topic.

CDK's `enforce_ssl` on a topic denies plain-HTTP requests for sns:Publish only (the
statement AWS's SNS security best practices show): Subscribe, SetTopicAttributes,
AddPermission or DeleteTopic would still be taken over HTTP. SQS's and S3's
`enforce_ssl` deny every action of the service already.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns


def deny_plain_http(topic: sns.ITopic) -> None:
    """Refuse every SNS action on `topic` to a request that did not come over TLS."""
    topic.add_to_resource_policy(
        iam.PolicyStatement(
            sid="EveryActionThroughTlsOnly",
            effect=iam.Effect.DENY,
            # "*" rather than {"AWS": "*"}: services are refused too, as in CDK's own.
            principals=[iam.StarPrincipal()],
            actions=["sns:*"],
            resources=[topic.topic_arn],
            conditions={"Bool": {"aws:SecureTransport": "false"}},
        )
    )
