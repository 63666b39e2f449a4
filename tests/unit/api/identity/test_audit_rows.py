"""An audit row never holds a refusal up for the pool's full timeout."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from psycopg_pool import PoolTimeout

from functions.api.identity import audit as audit_module
from functions.shared.db import sessions
from tests.support.logs import json_log_lines


class _UnreachablePool:
    """A pool whose database is down: every wait for a connection times out."""

    def __init__(self) -> None:
        self.waits: list[float | None] = []

    def getconn(self, timeout: float | None = None) -> Any:
        self.waits.append(timeout)
        raise PoolTimeout("no connection")


def test_a_refusal_with_the_database_down_waits_the_audit_wait_not_the_pool_timeout(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    # Given the app tier's pool cannot reach the database (pool timeout 30 s)
    monkeypatch.setenv("DB_POOL_TIMEOUT_SECONDS", "30")
    pool = _UnreachablePool()
    monkeypatch.setattr(sessions, "get_pool", lambda tier: pool)
    caplog.set_level(logging.INFO)

    # When an admin refusal is audited with a row
    audit_module.audit(
        "admin_access", "denied", reason="missing_api_key", source_ip="192.0.2.7", persist=True
    )

    # Then the row waited the short audit wait once, and its loss is logged after the decision
    assert pool.waits == [audit_module.AUDIT_WRITE_WAIT_SECONDS]
    assert audit_module.AUDIT_WRITE_WAIT_SECONDS < 30
    messages = [line["message"] for line in json_log_lines(caplog)]
    assert messages[0] == "authentication decision"
    assert messages[-1] == "audit row not written"


def test_other_writes_keep_the_pool_timeout(monkeypatch: pytest.MonkeyPatch):
    # Given the same unreachable pool
    pool = _UnreachablePool()
    monkeypatch.setattr(sessions, "get_pool", lambda tier: pool)

    # When an ordinary write session is opened, then it fails as unavailable...
    with pytest.raises(sessions.DatabaseUnavailable), sessions.write_session(user_id=None):
        pass

    # ...having waited the pool's own timeout (no override)
    assert pool.waits == [None]
