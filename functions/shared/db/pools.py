"""One psycopg connection pool per tier, created on first use and kept warm.

Reads go through the read-only tier, writes through the app tier; each pool's
connections authenticate with that tier's credential source. A new connection whose
password the server rejects triggers one refetch of the secret and one more attempt
(see credentials.py), inside the pool's own connect call, so a rotation is absorbed
without the caller noticing.

Every connection starts with the settings the code relies on, sent as startup options
(`session_settings`): any role may change its own defaults (ALTER ROLE CURRENT_USER
SET ...), and one injected statement that did so broke every later connection of the
tier until the next rotation. Startup options outrank role and database defaults, and
DISCARD ALL puts a session back to them, not to the role's.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from functions.shared.db.credentials import (
    CredentialSource,
    Tier,
    is_authentication_failure,
    source_for,
)
from functions.shared.db.roles import TIER_LOGIN_SETTINGS
from functions.shared.observability import logger
from functions.shared.settings import Settings, get_settings

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

T = TypeVar("T")

_lock = threading.Lock()
_pools: dict[Tier, ConnectionPool[Any]] = {}

# What every session of the API relies on, whatever defaults its login carries, and
# what another value, set as a login's own default, did (each is set so on a tier login
# in tests/integration/db/test_injected_sql_cannot_outlive_its_session.py).
CLIENT_SETTINGS: Mapping[str, str] = {
    # psycopg reads dates and times only in ISO style and intervals only in postgres
    # style: any other made every fetch of a timestamptz a NotImplementedError.
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    # Queries are encoded in the client encoding: SQL_ASCII failed any text with an
    # accent before it was sent.
    "client_encoding": "UTF8",
    # Times are answered in UTC, RDS's default, as the API's JSON has always given them.
    "TimeZone": "UTC",
    # The API's SQL names its schemas (public., auth.); nothing else is looked up.
    "search_path": "public",
    # Off, a query on a table with row-level security fails instead of being filtered.
    "row_security": "on",
    # A per-caller advisory lock makes a count and an insert one step only when the
    # count sees what committed while it waited: read committed. Serializable also
    # failed concurrent requests with serialization errors.
    "default_transaction_isolation": "read committed",
    # A write the API answered for survives a crash.
    "synchronous_commit": "on",
    # On, every error ended the session: a duplicate the API answers 409 became a 503.
    "exit_on_error": "off",
    # Lock waits end with the statement timeout, as a 503: a short lock_timeout failed
    # every write that met another. A short idle_session_timeout closed every pooled
    # connection before its first query.
    "lock_timeout": "0",
    "idle_session_timeout": "0",
    # The app tier writes; the read-only tier's own value (on) comes with its settings.
    "default_transaction_read_only": "off",
}

# Settings some servers lack: a startup option the server does not know refuses the
# connection, so a server that has them gets them SET each time a connection is lent
# (check_and_pin), after DISCARD ALL put the login's defaults back. PostgreSQL 17
# (RDS) has transaction_timeout: a short one as a login default ended every API
# transaction.
SETTINGS_SINCE: tuple[tuple[int, str, str], ...] = ((170000, "transaction_timeout", "0"),)

_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_OPTION_ESCAPE = re.compile(r"([\\\s])")


def session_settings(tier: Tier, settings: Settings) -> dict[str, str]:
    """What a tier's pooled connection starts with: the client settings, then the tier's
    own login settings (from the table rotation restores them from), then the API's
    statement_timeout, below the tier's (30 s, 60 s), which would outlast the API's
    29 s: past it, the server cancels and the caller gets a 503."""
    return {
        **CLIENT_SETTINGS,
        **TIER_LOGIN_SETTINGS[tier],
        "statement_timeout": f"{settings.db_statement_timeout_seconds * 1000}ms",
    }


def startup_options(values: Mapping[str, str]) -> str:
    """libpq's `options`: one `-c name=value` each. The server splits the string at
    whitespace and takes a backslash as escaping the next character, so both are
    escaped in a value ("ISO, MDY")."""
    parts = []
    for name, value in values.items():
        if not _SETTING_NAME.fullmatch(name):
            raise ValueError(f"not a setting name: {name!r}")
        escaped = _OPTION_ESCAPE.sub(r"\\\1", value)
        parts.append(f"-c {name}={escaped}")
    return " ".join(parts)


@lru_cache(maxsize=4)
def _pins_for(server_version: int) -> tuple[Any, ...]:
    """The SET statements SETTINGS_SINCE holds for a server of this version."""
    from psycopg import sql

    return tuple(
        sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
        for since, name, value in SETTINGS_SINCE
        if server_version >= since
    )


def check_and_pin(conn: Any) -> None:
    """The pool's check, run on a connection each time it is lent: the round trip
    that proves it alive also SETs what SETTINGS_SINCE holds for this server.

    Pinning here rather than after DISCARD ALL costs no round trip of its own: the
    pool checks every connection before lending it anyway (a frozen Lambda's
    connection may have been closed meanwhile), with an empty query where there is
    nothing to pin (psycopg_pool's check_connection). Connections are autocommit
    (build_pool), so each SET holds for the session.
    """
    pins = _pins_for(conn.info.server_version)
    if not pins:
        conn.execute("")
        return
    for statement in pins:
        conn.execute(statement, prepare=False)


def with_credentials(source: CredentialSource, connect: Callable[[dict[str, Any]], T]) -> T:
    """Run `connect` with the source's parameters; on a rejected password refetch once."""
    import psycopg

    try:
        return connect(source.current())
    except psycopg.OperationalError as error:
        if not is_authentication_failure(error):
            raise
        logger.info("database rejected the cached credentials; refetching the secret once")
        if not source.refresh():
            raise
    return connect(source.current())


def _connection_class(source: CredentialSource) -> type[Any]:
    import psycopg

    class TierConnection(psycopg.Connection[Any]):
        credentials: ClassVar[CredentialSource] = source

        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
            # The pool adds its own options (autocommit, connect_timeout); credentials
            # always come from the source, never from a conninfo string.
            def attempt(parameters: dict[str, Any]) -> Any:
                return super(TierConnection, cls).connect(conninfo, **{**parameters, **kwargs})

            return with_credentials(cls.credentials, attempt)

    return TierConnection


def forget_session_state(conn: Any) -> None:
    """Run when a connection comes back to the pool, before it is lent again.

    Sessions set the caller with set_config(..., true), which ends with the
    transaction. Anything a request leaves at session level, which only an injected
    statement would do, would otherwise reach the next request on this connection:
    a SET or set_config(..., false) (another caller's identity for row-level
    security, the tier's read-only default and timeouts lifted), a prepared
    statement under a name the driver uses (every later caller's statement replaced),
    an advisory lock (another caller's subscribe waits out the timeout), temporary
    tables, LISTEN. DISCARD ALL drops all of it and puts back the settings the
    connection started with (its startup options, `session_settings`); the settings
    a startup option cannot carry are set again when it is next lent (check_and_pin).
    """
    conn.execute("DISCARD ALL", prepare=False)


def build_pool(tier: Tier, source: CredentialSource, settings: Settings) -> ConnectionPool[Any]:
    """An open pool for one tier (also used by tests to pool against a given source)."""
    from psycopg_pool import ConnectionPool

    pool: ConnectionPool[Any] = ConnectionPool(
        connection_class=_connection_class(source),
        kwargs={
            "autocommit": True,
            # No server-side prepared statements: DISCARD ALL drops them at every
            # return, and a name the driver reuses is one an injected PREPARE can take.
            "prepare_threshold": None,
            "options": startup_options(session_settings(tier, settings)),
        },
        reset=forget_session_state,
        min_size=0,
        max_size=settings.db_pool_max_size,
        timeout=settings.db_pool_timeout_seconds,
        # A frozen Lambda's connections may have been closed by the server meanwhile;
        # every lend, a new connection's first included, goes through the check.
        check=check_and_pin,
        # Give up on a failing server within the request's budget instead of minutes.
        reconnect_timeout=settings.db_pool_timeout_seconds,
        name=f"babyshield-{tier}",
        open=False,
    )
    pool.open(wait=False)
    return pool


def get_pool(tier: Tier) -> ConnectionPool[Any]:
    with _lock:
        pool = _pools.get(tier)
        if pool is None:
            settings = get_settings()
            pool = build_pool(tier, source_for(tier, settings), settings)
            _pools[tier] = pool
        return pool


def close_pools() -> None:
    """Close every pool (tests, and the local runner on shutdown)."""
    with _lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()
