"""Sessions: a pooled connection inside one transaction, scoped to the caller.

`readonly_session()` uses the read-only tier, `write_session()` the app tier. The
caller's id and role are set with `set_config(..., true)` (SET LOCAL, bound
parameters), so they end with the transaction and never leak to the next request on
the same pooled connection. Without a caller, row-level security shows no rows of
users, subscriptions, api_keys or audit_log.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from functions.shared.db.credentials import Tier
from functions.shared.db.pools import get_pool
from functions.shared.errors import ServiceUnavailable
from functions.shared.observability import logger

if TYPE_CHECKING:
    import psycopg

CallerRole = Literal["user", "admin"]


class DatabaseUnavailable(ServiceUnavailable):
    """The database cannot be reached or is overloaded; the caller may retry."""

    default_message = "The service is temporarily unavailable."


class DatabaseSchemaBehind(DatabaseUnavailable):
    """The database lacks a table, column or function this code uses: a migration has
    not been applied. `sqlstate` says which kind (42P01, 42703, 42883)."""

    def __init__(self, sqlstate: str | None):
        super().__init__()
        self.sqlstate = sqlstate


class DatabaseOutcomeUnknown(DatabaseUnavailable):
    """The connection was lost while the transaction committed: it may have been made."""

    default_message = (
        "The service is temporarily unavailable, and could not confirm whether the "
        "change was made: check before repeating it."
    )


@contextmanager
def _session(
    tier: Tier, user_id: UUID | None, role: CallerRole, wait_seconds: float | None = None
) -> Iterator[psycopg.Connection[Any]]:
    import psycopg
    from psycopg_pool import PoolTimeout

    if role not in ("user", "admin"):
        raise ValueError("role must be 'user' or 'admin'")
    pool = get_pool(tier)
    try:
        conn = pool.getconn(timeout=wait_seconds)
    except PoolTimeout as exc:
        logger.warning("no database connection available", extra={"tier": tier})
        raise DatabaseUnavailable() from exc
    committing = False
    try:
        with conn.transaction():
            if user_id is not None:
                conn.execute(
                    "SELECT set_config('app.user_id', %s, true), "
                    "set_config('app.user_role', %s, true)",
                    (str(user_id), role),
                )
            yield conn
            committing = True
    except (
        psycopg.errors.UndefinedTable,
        psycopg.errors.UndefinedColumn,
        psycopg.errors.UndefinedFunction,
    ) as exc:
        # A function deployed ahead of its migration, or a database restored from an
        # older snapshot: an outage to the caller (503), not a bug in its request. The
        # server's message names only the missing object (these classes quote no row).
        logger.error(
            "database schema is behind this code: a migration has not been applied "
            "(docs/RUNBOOK.md, The API answers 503 after a deploy or a restore)",
            extra={"tier": tier, "sqlstate": exc.sqlstate, "missing": exc.diag.message_primary},
        )
        raise DatabaseSchemaBehind(exc.sqlstate) from exc
    except (psycopg.errors.ReadOnlySqlTransaction, NotImplementedError) as exc:
        if isinstance(exc, NotImplementedError) and not _unreadable_format(exc):
            raise
        # The session runs with settings the API does not use: a read-only transaction
        # where the code writes, dates or intervals in a style psycopg cannot read.
        # The pools pin them (pools.py::session_settings), so a statement of this same
        # request changed them (or code wrote on the read-only tier): a 503 to the
        # caller, as every database failure, never a 500. The message stays out of the
        # log: psycopg's quotes the value it could not read.
        logger.error(
            "database session settings are not the pool's",
            extra={"tier": tier, "error": type(exc).__name__},
        )
        raise DatabaseUnavailable() from exc
    except psycopg.OperationalError as exc:
        # The tier's statement_timeout, a dropped connection, a server restart: before
        # the COMMIT the transaction is gone and nothing was written. Lost during the
        # COMMIT, the server may have made it: the caller must not be told otherwise.
        logger.warning(
            "database operation failed",
            extra={
                "tier": tier,
                "sqlstate": getattr(exc, "sqlstate", None),
                "during_commit": committing,
            },
        )
        if committing:
            raise DatabaseOutcomeUnknown() from exc
        raise DatabaseUnavailable() from exc
    finally:
        pool.putconn(conn)


def _unreadable_format(exc: NotImplementedError) -> bool:
    """psycopg's refusal of a date, time or interval in a style it does not read
    ("can't parse timestamptz with DateStyle ...")."""
    return str(exc).startswith("can't parse ")


@contextmanager
def readonly_session(
    *, user_id: UUID | None = None, role: CallerRole = "user"
) -> Iterator[psycopg.Connection[Any]]:
    """A read-only transaction, optionally scoped to a caller for RLS-protected tables."""
    with _session("readonly", user_id, role) as conn:
        yield conn


@contextmanager
def write_session(
    *, user_id: UUID | None, role: CallerRole = "user", wait_seconds: float | None = None
) -> Iterator[psycopg.Connection[Any]]:
    """A read-write transaction as the app user, scoped to the caller (None: anonymous).

    `wait_seconds`: how long to wait for a connection (default DB_POOL_TIMEOUT_SECONDS).
    """
    with _session("app", user_id, role, wait_seconds) as conn:
        yield conn
