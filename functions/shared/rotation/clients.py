"""boto3 clients for rotation code: one per (service, region, endpoint), short timeouts.

A rotation step runs inside a Lambda with a fixed timeout; a hung AWS call must
fail the step quickly so that Secrets Manager's retry gets a chance, instead of
the whole invocation timing out half-way.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from functions.shared.settings import get_settings

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sts import STSClient

_lock = threading.Lock()
_clients: dict[tuple[str, str, str | None], Any] = {}


def client_config() -> Any:
    from botocore.config import Config

    return Config(
        connect_timeout=3,
        read_timeout=10,
        retries={"max_attempts": 4, "mode": "standard"},
    )


def _client(service: str) -> Any:
    settings = get_settings()
    key = (service, settings.region, settings.aws_endpoint_url)
    found = _clients.get(key)
    if found is not None:
        return found
    with _lock:
        found = _clients.get(key)
        if found is None:
            import boto3

            # A private session: the default one is not safe to share across threads.
            found = boto3.session.Session().client(
                service,  # type: ignore[call-overload]
                region_name=settings.region,
                endpoint_url=settings.aws_endpoint_url,
                config=client_config(),
            )
            _clients[key] = found
    return found


def secretsmanager() -> SecretsManagerClient:
    client: SecretsManagerClient = _client("secretsmanager")
    return client


def iam() -> IAMClient:
    client: IAMClient = _client("iam")
    return client


def cloudwatch() -> CloudWatchClient:
    client: CloudWatchClient = _client("cloudwatch")
    return client


def sts_with_credentials(access_key_id: str, secret_access_key: str) -> STSClient:
    """An STS client that signs with the given key (never cached: one per key under test)."""
    import boto3

    settings = get_settings()
    client: STSClient = boto3.session.Session().client(
        "sts",
        region_name=settings.region,
        endpoint_url=settings.aws_endpoint_url,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=client_config(),
    )
    return client


def error_code(error: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError, or None for anything else."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if isinstance(code, str):
            return code
    return None
