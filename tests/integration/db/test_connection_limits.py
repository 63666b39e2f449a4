"""Connection limits: a flood of connections from one tier stops at its limit, and the
application answers 'unavailable' instead of hanging or crashing. Runs on the private
scram cluster, whose max_connections leaves room above the read-only limit of 100."""

from __future__ import annotations

import contextlib

import psycopg
import pytest

from functions.shared.db import DatabaseUnavailable, readonly_session
from functions.shared.db.pools import close_pools
from tests.support.postgres import MigratedDatabase


def test_connections_beyond_the_readonly_limit_are_refused(scram_db: MigratedDatabase):
    # Given the read-only login holding its limit of 100 connections
    with contextlib.ExitStack() as stack:
        for _ in range(100):
            stack.enter_context(psycopg.connect(scram_db.tier("readonly")))
        # When one more connects
        # Then the server refuses it by name, and the held ones still work
        with pytest.raises(psycopg.OperationalError, match="too many connections for role"):
            psycopg.connect(scram_db.tier("readonly"))
        # And the session layer turns the refusal into a clean 503-class error
        unavailable = pytest.raises(DatabaseUnavailable)
        with _pointed_at(scram_db), unavailable, readonly_session() as conn:
            conn.execute("SELECT 1")
    # And once connections are released, the tier connects again
    with psycopg.connect(scram_db.tier("readonly")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_admin_login_is_limited_to_five_connections(scram_db: MigratedDatabase):
    with contextlib.ExitStack() as stack:
        for _ in range(5):
            stack.enter_context(psycopg.connect(scram_db.tier("admin")))
        with pytest.raises(psycopg.OperationalError, match="too many connections for role"):
            psycopg.connect(scram_db.tier("admin"))


@contextlib.contextmanager
def _pointed_at(database: MigratedDatabase):
    monkeypatch = pytest.MonkeyPatch()
    from functions.shared.settings import get_settings

    monkeypatch.setenv("BABYSHIELD_ENV", "local")
    monkeypatch.setenv("DATABASE_READONLY_URL", database.tier("readonly"))
    monkeypatch.setenv("DB_POOL_TIMEOUT_SECONDS", "1")
    get_settings.cache_clear()
    close_pools()
    try:
        yield
    finally:
        close_pools()
        monkeypatch.undo()
        get_settings.cache_clear()
