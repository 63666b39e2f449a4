"""One boto3 session per process: every client after the first reuses its loaded data."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from functions.shared import aws_clients


def test_clients_of_different_services_come_from_one_session(monkeypatch: pytest.MonkeyPatch):
    # Given a process that has built no client yet, with session creation counted
    created: list[Any] = []
    real_session = boto3.session.Session

    def counting_session(*args: Any, **kwargs: Any) -> Any:
        session = real_session(*args, **kwargs)
        created.append(session)
        return session

    monkeypatch.setattr(aws_clients, "_session", None)
    monkeypatch.setattr(boto3.session, "Session", counting_session)

    # When two services' clients are built
    first = aws_clients.new_client("dynamodb", region_name="us-east-1")
    second = aws_clients.new_client("secretsmanager", region_name="us-east-1")

    # Then one session made both, each for its own service
    assert len(created) == 1
    assert first.meta.service_model.service_name == "dynamodb"
    assert second.meta.service_model.service_name == "secretsmanager"
