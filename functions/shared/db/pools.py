"""One psycopg connection pool per tier, created on first use and kept warm.

Reads go through the read-only tier, writes through the app tier; each pool's
connections authenticate with that tier's credential source. A new connection whose
password the server rejects triggers one refetch of the secret and one more attempt
(see credentials.py), inside the pool's own connect call, so a rotation is absorbed
without the caller noticing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from functions.shared.db.credentials import (
    CredentialSource,
    Tier,
    is_authentication_failure,
    source_for,
)
from functions.shared.observability import logger
from functions.shared.settings import Settings, get_settings

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

T = TypeVar("T")

_lock = threading.Lock()
_pools: dict[Tier, ConnectionPool[Any]] = {}


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
    connection started with.
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
            # Beside the tier's own default (30 s read-only, 60 s app), which outlasts
            # the API's 29 s: past this, the server cancels and the caller gets a 503.
            "options": f"-c statement_timeout={settings.db_statement_timeout_seconds * 1000}",
        },
        reset=forget_session_state,
        min_size=0,
        max_size=settings.db_pool_max_size,
        timeout=settings.db_pool_timeout_seconds,
        # A frozen Lambda's connections may have been closed by the server meanwhile.
        check=ConnectionPool.check_connection,
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
