"""boto3 clients for the identity code, created on first use and then reused.

boto3 is imported here lazily: a request that never authenticates never pays
for it. Clients come from the process's shared session (aws_clients.py), are
cached here per service, region and endpoint, and carry short timeouts so a
slow AWS dependency turns into a quick 503 rather than a Lambda timeout.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from functions.shared.settings import get_settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

_lock = threading.Lock()
_clients: dict[tuple[str, str, str | None], Any] = {}


def _client(service: str) -> Any:
    settings = get_settings()
    key = (service, settings.region, settings.aws_endpoint_url)
    found = _clients.get(key)
    if found is not None:
        return found
    with _lock:
        found = _clients.get(key)
        if found is None:
            from botocore.config import Config

            from functions.shared.aws_clients import new_client

            config = Config(
                connect_timeout=2,
                read_timeout=3,
                retries={"max_attempts": 3, "mode": "standard"},
            )
            found = new_client(
                service,
                region_name=settings.region,
                endpoint_url=settings.aws_endpoint_url,
                config=config,
            )
            _clients[key] = found
    return found


def secretsmanager() -> SecretsManagerClient:
    client: SecretsManagerClient = _client("secretsmanager")
    return client


def dynamodb() -> DynamoDBClient:
    client: DynamoDBClient = _client("dynamodb")
    return client


def error_code(error: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError, without importing botocore."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if isinstance(code, str):
            return code
    return None
