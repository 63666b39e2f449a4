"""AWS clients for the identity code, created on first use and then reused.

botocore is imported lazily (functions/shared/aws_clients.py): a request that never
authenticates never pays for it. The clients carry the request-path timeouts so
a slow AWS dependency turns into a quick 503 rather than a Lambda timeout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from functions.shared.aws_clients import CLEANUP, RATE_LIMIT, REQUEST, cached_client
from functions.shared.aws_clients import condition_item as condition_item
from functions.shared.aws_clients import error_code as error_code

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient


def secretsmanager() -> SecretsManagerClient:
    client: SecretsManagerClient = cached_client("secretsmanager", REQUEST)
    return client


def dynamodb() -> DynamoDBClient:
    client: DynamoDBClient = cached_client("dynamodb", REQUEST)
    return client


def dynamodb_cleanup() -> DynamoDBClient:
    """DynamoDB for undoing a failed request's own write, on a short budget (CLEANUP)."""
    client: DynamoDBClient = cached_client("dynamodb", CLEANUP)
    return client


def dynamodb_rate_limit() -> DynamoDBClient:
    """DynamoDB for the per-key rate limit, on its own short budget (RATE_LIMIT)."""
    client: DynamoDBClient = cached_client("dynamodb", RATE_LIMIT)
    return client
