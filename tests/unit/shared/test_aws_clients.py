"""One botocore session per process: every client after the first reuses its loaded data."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.exceptions import ReadTimeoutError

from functions.shared import aws_clients


def test_clients_of_different_services_come_from_one_session(monkeypatch: pytest.MonkeyPatch):
    # Given a process that has built no client yet, with session creation counted
    created: list[Any] = []
    real_get_session = botocore.session.get_session

    def counting_get_session(*args: Any, **kwargs: Any) -> Any:
        session = real_get_session(*args, **kwargs)
        created.append(session)
        return session

    monkeypatch.setattr(aws_clients, "_session", None)
    monkeypatch.setattr(botocore.session, "get_session", counting_get_session)

    # When two services' clients are built
    first = aws_clients.new_client("dynamodb", region_name="us-east-1")
    second = aws_clients.new_client("secretsmanager", region_name="us-east-1")

    # Then one session made both, each for its own service
    assert len(created) == 1
    assert first.meta.service_model.service_name == "dynamodb"
    assert second.meta.service_model.service_name == "secretsmanager"


def test_reading_a_database_secret_never_imports_boto3(aws: str):
    # Given a database secret on the moto server
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="babyshield/test/db", SecretString='{"host": "h", "username": "u", "password": "p"}'
    )
    # When a fresh process reads it as the API does, and builds its DynamoDB client
    code = (
        "import sys\n"
        "from functions.shared.aws_clients import REQUEST, cached_client\n"
        "from functions.shared.db.credentials import fetch_secret_string\n"
        "assert fetch_secret_string('babyshield/test/db', False).startswith('{')\n"
        "cached_client('dynamodb', REQUEST)\n"
        "loaded = sorted(m for m in ('boto3', 's3transfer') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "AWS_REGION": "us-east-1"},
        capture_output=True,
        text=True,
        check=False,
    )
    # Then neither boto3 nor its s3transfer was loaded: ~50 ms of cold start saved
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_timeouts_budget_of_two_attempts_sends_a_stalled_call_twice_not_three_times(
    aws: str,
) -> None:
    """Timeouts.max_attempts counts attempts, as worst_case_seconds does (the API's 16 s
    of API Gateway's 29): botocore's retries["max_attempts"] counts only the retries
    after the first, and sent a stalled call three times."""
    from functions.shared.aws_clients import REQUEST, cached_client, clear_cached_clients

    client = cached_client("dynamodb", REQUEST)
    sent: list[str] = []

    def stalled(request: Any, **_: Any) -> None:
        sent.append(request.url)
        raise ReadTimeoutError(endpoint_url=request.url)

    client.meta.events.register("before-send.dynamodb.GetItem", stalled)
    try:
        with pytest.raises(ReadTimeoutError):
            client.get_item(TableName="any", Key={"pk": {"S": "any"}})
    finally:
        client.meta.events.unregister("before-send.dynamodb.GetItem", stalled)
        clear_cached_clients()

    assert len(sent) == REQUEST.max_attempts
