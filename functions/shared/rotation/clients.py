"""AWS clients for rotation code: one per (service, region, endpoint), short timeouts.

A rotation step runs inside a Lambda with a fixed timeout; a hung AWS call must
fail the step quickly so that Secrets Manager's retry gets a chance, instead of
the whole invocation timing out half-way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from functions.shared.aws_clients import BACKGROUND, cached_client, client_config, new_client
from functions.shared.aws_clients import error_code as error_code
from functions.shared.settings import get_settings

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sts import STSClient


def secretsmanager() -> SecretsManagerClient:
    client: SecretsManagerClient = cached_client("secretsmanager", BACKGROUND)
    return client


def iam() -> IAMClient:
    client: IAMClient = cached_client("iam", BACKGROUND)
    return client


def cloudwatch() -> CloudWatchClient:
    client: CloudWatchClient = cached_client("cloudwatch", BACKGROUND)
    return client


def sts_with_credentials(access_key_id: str, secret_access_key: str) -> STSClient:
    """An STS client that signs with the given key (never cached: one per key under test)."""
    settings = get_settings()
    client: STSClient = new_client(
        "sts",
        region_name=settings.region,
        endpoint_url=settings.aws_endpoint_url,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=client_config(BACKGROUND),
    )
    return client
