"""The app tier writes for a caller, and the audit log stays append-only for it."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import errors

from tests.support.postgres import MigratedDatabase


def test_any_session_of_the_app_tier_can_append_to_the_audit_log(db: MigratedDatabase):
    # A failed sign-in has no caller yet, and must still be recorded.
    with psycopg.connect(db.tier("app")) as conn:
        conn.execute(
            "INSERT INTO audit_log (actor, action, outcome, source_ip) "
            "VALUES (NULL, 'login', 'failure', '198.51.100.7')"
        )
    with db.admin() as admin:
        assert admin.execute("SELECT count(*) FROM audit_log").fetchone() == (1,)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET outcome = 'ok'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "SELECT * FROM audit_log",
        "ALTER TABLE audit_log DISABLE ROW LEVEL SECURITY",
    ],
)
def test_the_app_user_cannot_change_or_read_back_the_audit_log(
    db: MigratedDatabase, statement: str
):
    with db.admin() as admin:
        admin.execute("INSERT INTO audit_log (action, outcome) VALUES ('login', 'failure')")
    with psycopg.connect(db.tier("app")) as conn:
        # Even a caller with the admin role setting
        conn.execute(
            "SELECT set_config('app.user_id', %s, true), "
            "set_config('app.user_role', 'admin', true)",
            (str(uuid.uuid4()),),
        )
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(statement)
    with db.admin() as admin:
        assert admin.execute("SELECT outcome FROM audit_log").fetchall() == [("failure",)]


def test_the_app_user_cannot_read_password_hashes(db: MigratedDatabase):
    with psycopg.connect(db.tier("app")) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT password_hash FROM users")


def test_every_app_login_carries_the_tier_settings(db: MigratedDatabase):
    for role in db.roles.login_roles("app"):
        with psycopg.connect(db.conninfo(role)) as conn:
            assert conn.execute("SHOW statement_timeout").fetchone() == ("1min",)  # 60 s
