"""The audit log's id and time belong to the database: an app login appends rows, but
cannot pick their ids (taking the ids later rows need) or backdate them (sql/012)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from functions.api.identity.audit import _persist
from tests.support.postgres import MigratedDatabase

FORGED = [
    # An id of the app's choosing, here one the sequence has not handed out yet
    "INSERT INTO audit_log (id, action, outcome) OVERRIDING SYSTEM VALUE "
    "SELECT g, 'login', 'success' FROM generate_series(1, 50) AS g",
    # A row dated before the events it would hide among
    "INSERT INTO audit_log (action, outcome, occurred_at) "
    "VALUES ('login', 'success', '2001-01-01')",
]


@pytest.mark.parametrize("statement", FORGED)
def test_the_app_login_cannot_choose_an_audit_rows_id_or_time(db: MigratedDatabase, statement: str):
    with psycopg.connect(db.tier("app")) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement)
    with db.admin() as admin:
        assert admin.execute("SELECT count(*) FROM audit_log").fetchone() == (0,)


def test_later_audit_rows_are_still_written_after_an_attempt_to_take_their_ids(
    api_db: MigratedDatabase,
):
    # Given an app login that tried to occupy the next ids of the sequence
    with psycopg.connect(api_db.tier("app")) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(FORGED[0])
    # When the API records sign-ins through its own statement
    for _ in range(3):
        _persist("login", "failure", "198.51.100.7", None, None, "bad_password", {})
    # Then every row was written, with the database's ids and times
    with api_db.admin() as admin:
        rows = admin.execute(
            "SELECT action, outcome, source_ip::text, occurred_at > now() - interval '1 minute' "
            "FROM audit_log ORDER BY id"
        ).fetchall()
    assert rows == [("login", "failure", "198.51.100.7/32", True)] * 3
