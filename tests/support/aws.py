"""A moto server over HTTP for the test session: boto3 reaches it through AWS_ENDPOINT_URL."""

from __future__ import annotations

from typing import Any

import pytest

from ops.moto import REGION, reset_moto, running_moto_server, use_fake_credentials

__all__ = [
    "REGION",
    "record_client_budgets",
    "reset_moto",
    "running_moto_server",
    "use_fake_credentials",
]


def record_client_budgets(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[tuple[str, Any]]:
    """(service, timeouts) of every client `module` asks `cached_client` for, in order."""
    from functions.shared.aws_clients import cached_client

    budgets: list[tuple[str, Any]] = []

    def recording(service: str, timeouts: Any) -> Any:
        budgets.append((service, timeouts))
        return cached_client(service, timeouts)

    monkeypatch.setattr(module, "cached_client", recording)
    return budgets


def create_webhook_nonce_table() -> None:
    """The webhook-nonce table as the stack declares it: a routine rotation of the
    webhook secret reads from it which version the sender last signed with."""
    import boto3

    from functions.shared import names

    boto3.client("dynamodb").create_table(
        TableName=names.WEBHOOK_NONCE_TABLE,
        KeySchema=[{"AttributeName": names.WEBHOOK_NONCE_PARTITION_KEY, "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": names.WEBHOOK_NONCE_PARTITION_KEY, "AttributeType": "S"}
        ],
        BillingMode="PAY_PER_REQUEST",
    )
