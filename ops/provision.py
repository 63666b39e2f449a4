"""Create, where AWS_ENDPOINT_URL points, the resources the CDK stack declares.

Used by the local stack on every start and by the tests. Every function is
idempotent: an existing resource is reused, never duplicated or reset.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError

from functions.shared import names


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def ensure_tables(dynamodb: Any, tables: Iterable[names.TableSpec] = names.TABLES) -> None:
    """Every DynamoDB table with its key and TTL attribute, on-demand billing."""
    for table in tables:
        try:
            dynamodb.create_table(
                TableName=table.name,
                KeySchema=[{"AttributeName": table.partition_key, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": table.partition_key, "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as exc:
            if _error_code(exc) != "ResourceInUseException":
                raise
            continue
        dynamodb.update_time_to_live(
            TableName=table.name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
        )


def ensure_log_groups(logs: Any, groups: Iterable[str]) -> None:
    for group in groups:
        try:
            logs.create_log_group(logGroupName=group)
        except ClientError as exc:
            if _error_code(exc) != "ResourceAlreadyExistsException":
                raise


def ensure_log_stream(logs: Any, group: str, stream: str) -> None:
    try:
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
    except ClientError as exc:
        if _error_code(exc) != "ResourceAlreadyExistsException":
            raise


def ensure_parameter(ssm: Any, name: str, value: str) -> None:
    """A String parameter; an existing one keeps its value (operators may have changed it)."""
    try:
        ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=False)
    except ClientError as exc:
        if _error_code(exc) != "ParameterAlreadyExists":
            raise
