"""functions.shared.db sessions against the real database: the right tier, the caller
scoped per transaction, nothing half-written, and database trouble as a clean 503."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from functions.shared.db import DatabaseUnavailable, readonly_session, write_session
from functions.shared.db.pools import close_pools
from functions.shared.errors import ServiceUnavailable
from functions.shared.settings import get_settings
from tests.support.postgres import MigratedDatabase, make_user, point_pools_at


@pytest.fixture
def pooled(db: MigratedDatabase, monkeypatch: pytest.MonkeyPatch) -> Iterator[MigratedDatabase]:
    point_pools_at(db, monkeypatch)
    yield db
    close_pools()


def test_reads_use_the_readonly_login_and_writes_the_app_login(pooled: MigratedDatabase):
    with readonly_session() as conn:
        assert conn.execute("SELECT current_user").fetchone() == (pooled.roles.readonly_a,)
        assert conn.execute("SHOW transaction_read_only").fetchone() == ("on",)
    with write_session(user_id=None) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (pooled.roles.app_a,)


def test_the_caller_is_scoped_to_one_transaction_on_a_reused_connection(
    pooled: MigratedDatabase,
):
    alice = make_user(pooled)
    with readonly_session(user_id=alice) as conn:
        first_pid = conn.info.backend_pid
        assert conn.execute("SELECT count(*) FROM subscriptions").fetchone() == (1,)
    # The next request on the same pooled connection names no caller
    with readonly_session() as conn:
        assert conn.info.backend_pid == first_pid
        assert conn.execute("SELECT count(*) FROM subscriptions").fetchone() == (0,)
        assert conn.execute("SELECT auth.caller_id()").fetchone() == (None,)


def test_a_failure_inside_a_write_session_leaves_nothing_written(pooled: MigratedDatabase):
    alice = make_user(pooled)

    class Boom(Exception):
        pass

    def subscribe_then_fail() -> None:
        with write_session(user_id=alice) as conn:
            conn.execute(
                "INSERT INTO subscriptions (user_id, product) VALUES (%s, 'gate')", (alice,)
            )
            raise Boom

    with pytest.raises(Boom):
        subscribe_then_fail()
    with readonly_session(user_id=alice) as conn:
        products = [r[0] for r in conn.execute("SELECT product FROM subscriptions")]
    assert products == ["crib"]


def test_a_cancelled_statement_is_a_retryable_unavailable_error(pooled: MigratedDatabase):
    def sleep_past_the_timeout() -> None:
        with readonly_session() as conn:
            conn.execute("SET LOCAL statement_timeout = '100ms'")
            conn.execute("SELECT pg_sleep(2)")

    with pytest.raises(DatabaseUnavailable) as caught:
        sleep_past_the_timeout()
    assert isinstance(caught.value, ServiceUnavailable)
    assert "pg_sleep" not in caught.value.message
    # And the pool is healthy afterwards
    with readonly_session() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_an_unknown_role_is_refused_before_any_query(pooled: MigratedDatabase):
    with (
        pytest.raises(ValueError, match="role"),
        readonly_session(
            user_id=uuid.uuid4(),
            role="superuser",  # type: ignore[arg-type]
        ),
    ):
        pass


def test_session_level_settings_do_not_reach_the_next_request(pooled: MigratedDatabase):
    """Only an injected statement would set these for the session; the pool forgets them."""
    with readonly_session() as conn:
        first_pid = conn.info.backend_pid
        conn.execute(
            "SELECT set_config('app.user_id', %s, false), "
            "set_config('app.user_role', 'admin', false), "
            "set_config('default_transaction_read_only', 'off', false), "
            "set_config('statement_timeout', '0', false)",
            (str(uuid.uuid4()),),
        )
    with readonly_session() as conn:
        assert conn.info.backend_pid == first_pid
        assert conn.execute("SELECT auth.caller_id()").fetchone() == (None,)
        assert conn.execute("SHOW transaction_read_only").fetchone() == ("on",)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("10s",)


def test_a_slow_statement_is_cancelled_by_the_apis_own_limit(
    pooled: MigratedDatabase, monkeypatch: pytest.MonkeyPatch
):
    # Given the API's limit below the tier's 30 s role default
    monkeypatch.setenv("DB_STATEMENT_TIMEOUT_SECONDS", "1")
    get_settings.cache_clear()
    close_pools()
    # When a statement runs longer, Then it is cancelled: a 503, not a Lambda timeout
    with pytest.raises(DatabaseUnavailable), readonly_session() as conn:
        conn.execute("SELECT pg_sleep(5)")


def test_a_prepared_statement_left_by_one_request_cannot_rename_the_next_callers(
    pooled: MigratedDatabase,
):
    """psycopg prepares the caller-setting statement (`_pg3_0`) after five uses. An
    injected statement that replaced it survived RESET ALL, and every later request on
    that connection ran as whoever it named, admin included. Alice's next request must
    still be Alice, as a user."""
    alice, mallory = make_user(pooled), make_user(pooled)
    for _ in range(6):
        with readonly_session(user_id=alice) as conn:
            conn.execute("SELECT 1")
    with readonly_session(user_id=mallory) as conn:  # the injected part
        taken = "SELECT 1 FROM pg_prepared_statements WHERE name = '_pg3_0'"
        if conn.execute(taken).fetchone():
            conn.execute("DEALLOCATE _pg3_0")  # a spelling psycopg does not watch for
        conn.execute(
            "PREPARE _pg3_0 (text, text) AS SELECT set_config('app.user_id', "
            f"'{mallory}', true), set_config('app.user_role', 'admin', true)"
        )
    with readonly_session(user_id=alice) as conn:
        caller = conn.execute("SELECT auth.caller_id(), current_setting('app.user_role')")
        assert caller.fetchone() == (alice, "user")


def test_a_session_advisory_lock_left_by_one_request_is_released(pooled: MigratedDatabase):
    """An advisory lock taken at session level (as the one a caller's subscription
    insert waits on) outlived the request that took it: that caller's subscribe then
    waited out the statement timeout, a 503, for as long as the connection lived."""
    victim = make_user(pooled)
    with readonly_session() as conn:  # the injected part
        conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (0x5B55, str(victim)))
        pid = conn.info.backend_pid
    with readonly_session() as conn:
        assert conn.info.backend_pid == pid  # the same connection, lent again
    with pooled.admin() as admin:
        held = admin.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s", (pid,)
        ).fetchone()
    assert held == (0,)


def test_a_request_past_the_pools_size_waits_then_gets_a_clean_503(
    pooled: MigratedDatabase, monkeypatch: pytest.MonkeyPatch
):
    """One pool per instance, at most DB_POOL_MAX_SIZE connections: the tiers'
    connection limits hold however many requests an instance takes at once, and a
    request that finds every connection busy waits DB_POOL_TIMEOUT_SECONDS, then is a
    retryable 503 rather than a connection more."""
    import threading

    monkeypatch.setenv("DB_POOL_TIMEOUT_SECONDS", "0.5")
    get_settings.cache_clear()
    close_pools()
    holding, release = threading.Event(), threading.Event()

    def hold_the_only_connection() -> None:
        with readonly_session() as conn:
            conn.execute("SELECT 1")
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_only_connection)
    holder.start()
    try:
        assert holding.wait(10)
        with pytest.raises(DatabaseUnavailable), readonly_session() as conn:
            conn.execute("SELECT 1")
        with pooled.admin() as admin:
            opened = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND datname = %s",
                (pooled.roles.readonly_a, pooled.parameters["dbname"]),
            ).fetchone()
        assert opened == (1,)
    finally:
        release.set()
        holder.join(10)
