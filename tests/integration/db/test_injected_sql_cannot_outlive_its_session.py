"""SQL injected into one request (arbitrary SQL on a tier's login, inside a session where
the API named the caller) must not outlive that request: no login default it sets
reaches the API's later connections, no hash it can read lets it set an admin's
password, and no statement of it runs on once its client is gone.

Found by a review that probed the database as such an attacker; each test was first
seen failing against the code before the fix (docs/DATABASE.md, "What row-level
security does not do")."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from functions.shared.db import DatabaseUnavailable, readonly_session, write_session
from functions.shared.db.credentials import Tier
from functions.shared.db.pools import (
    SETTINGS_SINCE,
    close_pools,
    session_settings,
    startup_options,
)
from functions.shared.errors import to_http
from functions.shared.settings import get_settings
from tests.support.api import call_api
from tests.support.postgres import MigratedDatabase, make_user, point_pools_at

REPO = Path(__file__).resolve().parents[3]


def _restore(db: MigratedDatabase, login: str, tier: str) -> None:
    from functions.rotate_db.database import restore_login_settings

    with db.admin() as admin:
        restore_login_settings(admin, login, tier)


@pytest.fixture
def pooled(db: MigratedDatabase, monkeypatch: pytest.MonkeyPatch) -> Iterator[MigratedDatabase]:
    point_pools_at(db, monkeypatch)
    yield db
    close_pools()


@pytest.fixture
def pooled_newest(
    scram_db: MigratedDatabase, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MigratedDatabase]:
    """The pools against the session's password-checking cluster: the embedded
    PostgreSQL (18) when the main server trusts, which has settings 15 lacks."""
    point_pools_at(scram_db, monkeypatch)
    yield scram_db
    close_pools()


# 1. A login's own defaults: any role may change them, and one injected statement
#    changed them for every later connection of the tier, until the next rotation.


def test_injected_sql_on_a_read_path_cannot_break_every_later_read(api_db: MigratedDatabase):
    """Given a user whose watch list answers 200, when injected SQL on the read-only
    login runs `SET default_transaction_read_only = off; ALTER ROLE CURRENT_USER SET
    DateStyle = 'German'` and a new Lambda instance opens its connections, then the
    list still answers 200. Before, every new connection started with a DateStyle
    psycopg cannot read: every timestamptz read on the tier was a 500 until the next
    rotation (DISCARD ALL put the tampered default back, too)."""
    alice = make_user(api_db)
    headers = {"X-Test-User-Id": str(alice)}
    login = api_db.roles.readonly_a
    assert call_api("GET", "/me/subscriptions", headers=headers).status == 200
    try:
        with psycopg.connect(api_db.tier("readonly"), autocommit=True) as injected:
            injected.execute("SET default_transaction_read_only = off")
            injected.execute("ALTER ROLE CURRENT_USER SET DateStyle = 'German'")
        close_pools()  # a new Lambda instance, or the pool's next reconnect
        for _ in range(2):  # a new connection, then the same one after DISCARD ALL
            response = call_api("GET", "/me/subscriptions", headers=headers)
            assert response.status == 200, f"{response.status} {response.body}"
    finally:
        _restore(api_db, login, "readonly")


def test_injected_sql_on_a_write_path_cannot_make_every_later_write_fail(
    pooled: MigratedDatabase,
):
    """Given injected SQL on the app login that ran `ALTER ROLE CURRENT_USER SET
    default_transaction_read_only = on`, when a user subscribes on a new connection,
    then the write succeeds. Before, every app-tier connection opened afterwards was
    read-only: subscriptions, webhook upserts, key changes and audit rows all failed
    (a 500) until the next rotation."""
    alice = make_user(pooled)
    login = pooled.roles.app_a
    try:
        with psycopg.connect(pooled.tier("app"), autocommit=True) as injected:
            injected.execute("ALTER ROLE CURRENT_USER SET default_transaction_read_only = on")
        close_pools()
        for product in ("gate", "stroller"):  # a new connection, then after DISCARD ALL
            with write_session(user_id=alice) as conn:
                conn.execute(
                    "INSERT INTO public.subscriptions (user_id, product) VALUES (%s, %s)",
                    (alice, product),
                )
    finally:
        _restore(pooled, login, "app")


# Each a login default that broke the API, or its answers, when it reached a session.
TAMPERED = {
    "DateStyle": "German",
    "IntervalStyle": "sql_standard",
    "client_encoding": "SQL_ASCII",
    "TimeZone": "Pacific/Kiritimati",
    "search_path": "auth",
    "row_security": "off",
    "default_transaction_isolation": "serializable",
    "synchronous_commit": "off",
    "exit_on_error": "on",
    "lock_timeout": "1ms",
    "idle_session_timeout": "1ms",
    "idle_in_transaction_session_timeout": "1ms",
    "statement_timeout": "1ms",
    "client_connection_check_interval": "0",
}
TAMPERED_SINCE = {"transaction_timeout": "1ms"}


def _tamper_and_read_back(db: MigratedDatabase, tier: Tier) -> list[dict[str, tuple[str, str]]]:
    """Set every tampered default on the tier's login as injected SQL would; then, in a
    pooled session on a new connection and in one on the same connection after DISCARD
    ALL, read each setting as the session has it and as it is once SET to the value
    the pool pins (so both are spelled as the server shows them)."""
    tampered = {**TAMPERED, "default_transaction_read_only": "on" if tier == "app" else "off"}
    pinned = session_settings(tier, get_settings())
    with psycopg.connect(db.tier(tier), autocommit=True) as injected:
        version = injected.info.server_version
        for since, name, value in SETTINGS_SINCE:
            if version >= since:
                tampered[name] = TAMPERED_SINCE[name]
                pinned[name] = value
        injected.execute("SET default_transaction_read_only = off")
        for name, value in tampered.items():
            injected.execute(
                sql.SQL("ALTER ROLE CURRENT_USER SET {} = {}").format(
                    sql.Identifier(name), sql.Literal(value)
                )
            )
    assert set(tampered) <= set(pinned)
    close_pools()  # a new Lambda instance, or the pool's next reconnect
    reads = []
    for _ in range(2):
        seen: dict[str, tuple[str, str]] = {}
        with _session(tier) as conn:
            for name in tampered:
                show = sql.SQL("SHOW {}").format(sql.Identifier(name))
                shown = conn.execute(show).fetchone()
                conn.execute(
                    sql.SQL("SET LOCAL {} = {}").format(
                        sql.Identifier(name), sql.Literal(pinned[name])
                    )
                )
                wanted = conn.execute(show).fetchone()
                assert shown is not None
                assert wanted is not None
                seen[name] = (str(shown[0]), str(wanted[0]))
        reads.append(seen)
    return reads


@contextmanager
def _session(tier: Tier) -> Iterator[psycopg.Connection[Any]]:
    if tier == "readonly":
        with readonly_session() as conn:
            yield conn
    else:
        with write_session(user_id=None) as conn:
            yield conn


def _differing(reads: list[dict[str, tuple[str, str]]]) -> list[dict[str, tuple[str, str]]]:
    return [{name: pair for name, pair in read.items() if pair[0] != pair[1]} for read in reads]


@pytest.mark.parametrize("tier", ["readonly", "app"])
def test_no_login_default_the_api_relies_on_reaches_its_sessions(
    pooled: MigratedDatabase, tier: Tier
):
    """Given injected SQL that set, as its login's defaults, every setting whose other
    value breaks the API or its answers (how dates and intervals read, the encoding,
    the time zone, the schemas looked in, row-level security, isolation, durability,
    the timeouts, the read-only default, the dead-client check), when the pool opens a
    connection and lends it again after DISCARD ALL, then each session has the value
    the pool pins, not the login's."""
    login = pooled.roles.login_roles(tier)[0]
    try:
        reads = _tamper_and_read_back(pooled, tier)
    finally:
        close_pools()
        _restore(pooled, login, tier)
    assert _differing(reads) == [{}, {}]


def test_settings_only_a_newer_server_has_are_pinned_too(pooled_newest: MigratedDatabase):
    """Given a server with transaction_timeout (PostgreSQL 17, as on RDS), whose login
    default of 1 ms ended every API transaction, when injected SQL sets it so, then the
    pool's sessions, new and after DISCARD ALL, still run without it. A startup option
    the server does not know refuses the connection, so it is SET each time the pool
    lends a connection instead (check_and_pin)."""
    with psycopg.connect(pooled_newest.tier("app")) as probe:
        if probe.info.server_version < 170000:
            pytest.skip("the password-checking cluster is older than PostgreSQL 17")
    login = pooled_newest.roles.app_a
    try:
        reads = _tamper_and_read_back(pooled_newest, "app")
    finally:
        close_pools()
        _restore(pooled_newest, login, "app")
    assert [read["transaction_timeout"] for read in reads] == [("0", "0"), ("0", "0")]
    assert _differing(reads) == [{}, {}]


def test_startup_options_escape_what_the_server_would_split_on():
    """libpq's `options` is split at whitespace, with a backslash escaping the next
    character: a value with a space ("read committed") must stay one value."""
    assert startup_options({"DateStyle": "ISO, MDY", "x": "a\\b", "y": "tab\there"}) == (
        "-c DateStyle=ISO,\\ MDY -c x=a\\\\b -c y=tab\\\there"
    )
    with pytest.raises(ValueError, match="not a setting name"):
        startup_options({"statement_timeout=0 -c row_security": "off"})


def test_a_transaction_made_read_only_inside_a_write_is_a_503_not_a_500(
    pooled: MigratedDatabase,
):
    """Given a write whose transaction a statement of its own request made read-only,
    when it writes, then the caller gets the 503 of every database failure, not a 500
    with the database's error."""
    alice = make_user(pooled)

    def subscribe_in_a_read_only_transaction() -> None:
        with write_session(user_id=alice) as conn:
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute(
                "INSERT INTO public.subscriptions (user_id, product) VALUES (%s, 'gate')",
                (alice,),
            )

    with pytest.raises(DatabaseUnavailable) as caught:
        subscribe_in_a_read_only_transaction()
    assert to_http(caught.value).status == 503


def test_a_date_style_psycopg_cannot_read_is_a_503_not_a_500(pooled: MigratedDatabase):
    """psycopg raises NotImplementedError for a timestamptz in another DateStyle; inside
    a session that is the database's failure, a 503, and any other NotImplementedError
    is left as it is."""

    def read_a_time_in_german_style() -> None:
        with readonly_session() as conn:
            conn.execute("SET LOCAL DateStyle = 'German'")
            conn.execute("SELECT now()").fetchone()

    with pytest.raises(DatabaseUnavailable) as caught:
        read_a_time_in_german_style()
    assert to_http(caught.value).status == 503
    with pytest.raises(NotImplementedError, match="not the database's"), readonly_session():
        raise NotImplementedError("not the database's")


# 2. The sign-in rehash: the hash that authorises replacing a hash is one the other
#    tier hands out for any e-mail.


def test_injected_sql_on_both_tiers_cannot_replace_an_admins_password_hash(
    db: MigratedDatabase,
):
    """Given injected SQL on a read path (read-only login) and on a write path (app
    login) of one API, when the read path names itself admin, lists the admins'
    e-mails, reads an admin's stored hash through `auth.user_for_login` and the write
    path hands it to `auth.replace_password_hash` with a hash of its choosing, then
    the function refuses and the admin's hash is unchanged (sql/024). Before, it was
    replaced, and the attacker signed in as that admin. A regular user's hash can
    still be replaced so (docs/DATABASE.md)."""
    admin_id = make_user(db, role="admin")
    with db.admin() as su:
        su.execute(
            "UPDATE users SET password_hash = %s WHERE id = %s",
            ("scrypt$real-admin-hash", admin_id),
        )
    with psycopg.connect(db.tier("readonly")) as read_path:
        read_path.execute(
            "SELECT set_config('app.user_id', %s, true), "
            "set_config('app.user_role', 'admin', true)",
            (str(uuid.uuid4()),),
        )
        row = read_path.execute("SELECT email FROM users WHERE role = 'admin'").fetchone()
        assert row is not None
        stolen = read_path.execute(
            "SELECT id, password_hash FROM auth.user_for_login(%s)", (row[0],)
        ).fetchone()
    assert stolen == (admin_id, "scrypt$real-admin-hash")
    with psycopg.connect(db.tier("app")) as write_path:
        replaced = write_path.execute(
            "SELECT auth.replace_password_hash(%s, %s, 'scrypt$chosen-by-attacker')",
            (stolen[0], stolen[1]),
        ).fetchone()
        write_path.commit()
    with db.admin() as su:
        now = su.execute("SELECT password_hash FROM users WHERE id = %s", (admin_id,)).fetchone()
    assert (replaced, now) == ((False,), ("scrypt$real-admin-hash",))


# 3. A statement that outlives its client.

_HOLDER = """
import sys, time, psycopg
conn = psycopg.connect(sys.argv[1], application_name="injected-holder")
conn.execute("SET LOCAL statement_timeout = 0")
conn.execute("LOCK TABLE public.subscriptions IN ACCESS EXCLUSIVE MODE")
print("locked", flush=True)
conn.execute("SELECT pg_sleep(120)")
"""


def _holder_pids(db: MigratedDatabase) -> list[int]:
    with db.admin() as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE application_name = 'injected-holder' AND datname = current_database()"
        ).fetchall()
    return [pid for (pid,) in rows if isinstance(pid, int)]


def _sleeping(db: MigratedDatabase) -> bool:
    with db.admin() as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'injected-holder' "
            "AND state = 'active' AND query LIKE '%%pg_sleep%%'"
        ).fetchone()
    return bool(row and row[0])


def test_a_statement_whose_client_is_gone_does_not_keep_every_callers_watches_locked(
    pooled: MigratedDatabase, monkeypatch: pytest.MonkeyPatch
):
    """Given injected SQL on the app login that lifted its statement timeout, took
    `LOCK TABLE subscriptions IN ACCESS EXCLUSIVE MODE` (the tier's table-level DELETE
    allows every lock mode) and sleeps, when the Lambda that sent it is gone, then
    within 15 s the server ends the statement, its lock and its connection slot, and
    Alice's watch list answers again. The tier's logins check for a vanished client
    every 10 s (client_connection_check_interval, sql/024; the RDS parameter group
    sets it for every login). Before, the orphan ran on with its lock: every caller's
    list waited and failed, each keeping one of the login's 50 connection slots.
    An attacker who also SETs the check to 0 is not stopped so (docs/DATABASE.md)."""
    monkeypatch.setenv("DB_STATEMENT_TIMEOUT_SECONDS", "1")
    get_settings.cache_clear()
    close_pools()
    alice = make_user(pooled)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, pooled.tier("app")],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        deadline = time.monotonic() + 10
        while not _sleeping(pooled):  # the lock is held by a running statement
            assert time.monotonic() < deadline
            time.sleep(0.1)
        holder.kill()  # the Lambda is gone
        holder.wait(10)
        deadline = time.monotonic() + 15
        while _holder_pids(pooled) and time.monotonic() < deadline:
            time.sleep(0.5)
        orphans = _holder_pids(pooled)
        listed: object
        try:
            with readonly_session(user_id=alice) as conn:
                listed = conn.execute("SELECT count(*) FROM public.subscriptions").fetchone()
        except DatabaseUnavailable as exc:
            listed = exc
        assert (orphans, listed) == ([], (1,)), (
            f"15 s after its client died the orphan statement still runs ({orphans}) "
            f"and Alice's watches answer {listed!r}"
        )
    finally:
        if holder.poll() is None:
            holder.kill()
        with pooled.admin() as admin:
            for pid in _holder_pids(pooled):
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def _statements_the_pool_sends(tier: Tier, lends: int) -> list[str]:
    """The queries the pool itself sends while a connection is lent `lends` times and
    given back, read off libpq's protocol trace (the frontend's Query messages)."""
    from functions.shared.db.pools import get_pool

    pool = get_pool(tier)
    with pool.connection():
        pass  # the connection is open before tracing starts
    trace = Path(os.environ.get("TMPDIR", "/tmp")) / f"pool-trace-{uuid.uuid4().hex}"
    try:
        with trace.open("w") as out:
            with pool.connection() as conn:
                conn.pgconn.trace(out.fileno())
            for _ in range(lends - 1):
                with pool.connection():
                    pass
            with pool.connection() as conn:
                conn.pgconn.untrace()
        return [
            line.split("\t")[-1].strip().strip('"')
            for line in trace.read_text().splitlines()
            if "\tF\t" in line and "\tQuery\t" in line
        ]
    finally:
        trace.unlink(missing_ok=True)


@pytest.mark.parametrize("server", ["main", "newest"])
def test_a_lent_connection_costs_one_round_trip_each_way(
    server: str, request: pytest.FixtureRequest
):
    """Given the pool on the machine's server and on the newest (17+, where
    transaction_timeout is pinned), when a connection is lent and given back three
    times, then the pool sends one statement per lend (its liveness check, which is
    the pin where there is one) and one per return (DISCARD ALL): pinning after
    DISCARD ALL cost every request a round trip of its own on RDS."""
    db: MigratedDatabase = request.getfixturevalue(
        "pooled" if server == "main" else "pooled_newest"
    )
    with psycopg.connect(db.tier("readonly")) as probe:
        newest = probe.info.server_version >= 170000
    if server == "newest" and not newest:
        pytest.skip("the password-checking cluster is older than PostgreSQL 17")
    sent = _statements_the_pool_sends("readonly", lends=3)
    lend = "SET \"transaction_timeout\" = '0'" if newest else ""
    # Tracing starts inside the first lend and ends inside the last: its return, then
    # two whole lends, then the last lend's check.
    assert sent == ["DISCARD ALL", lend, "DISCARD ALL", lend, "DISCARD ALL", lend]
