"""One botocore session per process: every client after the first reuses its loaded data."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import boto3
import botocore.session
import pytest

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
