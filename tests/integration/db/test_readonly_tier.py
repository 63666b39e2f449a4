"""The read-only tier: a read path that an injection reaches still cannot write, read
hashes, run long or open unbounded connections. Every statement here is sent to the
server directly, as the read-only login, to prove the database itself refuses."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from tests.support.postgres import MigratedDatabase

WRITES = [
    "INSERT INTO recalls (source_id, product, brand, hazard, remedy, recall_date) "
    "VALUES ('x', 'p', 'b', 'h', 'r', '2024-01-01')",
    "UPDATE recalls SET product = 'changed'",
    "DELETE FROM recalls",
    "INSERT INTO audit_log (action, outcome) VALUES ('a', 'b')",
    "CREATE TABLE public.smuggled (x int)",
    "CREATE TEMP TABLE smuggled (x int)",
    "TRUNCATE recalls",
    "DROP TABLE recalls",
]


@pytest.mark.parametrize("statement", WRITES)
def test_readonly_user_cannot_write_even_with_direct_sql(db: MigratedDatabase, statement: str):
    # Given a connection as the read-only login
    refused = pytest.raises((errors.ReadOnlySqlTransaction, errors.InsufficientPrivilege))
    with psycopg.connect(db.tier("readonly")) as conn, refused:
        # When it sends a write or DDL statement itself, Then the server refuses it
        conn.execute(statement)


@pytest.mark.parametrize("statement", WRITES[:5] + WRITES[6:])
def test_turning_off_read_only_default_does_not_let_it_write(db: MigratedDatabase, statement: str):
    # Given a read-only session that switches its read-only default off
    with psycopg.connect(db.tier("readonly"), autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")
        conn.execute("SET transaction_read_only = off")
        # When it writes, Then the missing grants still refuse it
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(statement)


@pytest.mark.parametrize(
    "statement",
    ["SELECT password_hash FROM users", "SELECT * FROM users", "SELECT secret_hash FROM api_keys"],
)
def test_readonly_user_cannot_read_password_or_key_hashes(db: MigratedDatabase, statement: str):
    denied = pytest.raises(errors.InsufficientPrivilege)
    with psycopg.connect(db.tier("readonly")) as conn, denied:
        conn.execute(statement)


def test_every_readonly_login_carries_the_tier_settings(db: MigratedDatabase):
    # Role settings apply at login to the login role, so both alternating users need them.
    for role in db.roles.login_roles("readonly"):
        with psycopg.connect(db.conninfo(role)) as conn:
            assert conn.execute("SHOW statement_timeout").fetchone() == ("30s",)
            assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)


def test_a_statement_longer_than_the_login_timeout_is_cancelled(db: MigratedDatabase):
    # Given the tier's statement_timeout, shortened on one login so the test stays fast
    role = db.roles.readonly_b
    with db.admin() as admin:
        admin.execute(
            psycopg.sql.SQL("ALTER ROLE {} SET statement_timeout = '200ms'").format(
                psycopg.sql.Identifier(role)
            )
        )
    try:
        # When a fresh login runs a statement longer than that
        # Then the server cancels it
        cancelled = pytest.raises(errors.QueryCanceled)
        with psycopg.connect(db.conninfo(role)) as conn, cancelled:
            conn.execute("SELECT pg_sleep(3)")
    finally:
        with db.admin() as admin:
            admin.execute(
                psycopg.sql.SQL("ALTER ROLE {} SET statement_timeout = '30s'").format(
                    psycopg.sql.Identifier(role)
                )
            )
