"""Row-level security: a caller sees and changes only their own rows, whatever the SQL
says, and a session that names no caller sees nothing at all. Statements are sent as
the tier logins with the caller set exactly as functions.shared.db sets it."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import errors

from tests.support.postgres import MigratedDatabase, make_user

RLS_TABLES = ("users", "subscriptions", "api_keys", "audit_log")


def as_caller(conn: psycopg.Connection, user_id: uuid.UUID | None, role: str = "user") -> None:
    if user_id is not None:
        conn.execute(
            "SELECT set_config('app.user_id', %s, true), set_config('app.user_role', %s, true)",
            (str(user_id), role),
        )


@pytest.mark.parametrize("tier", ["readonly", "app"])
def test_a_session_without_a_caller_sees_no_rows(db: MigratedDatabase, tier: str):
    # Given rows of two users
    make_user(db)
    make_user(db)
    readable = {"readonly": RLS_TABLES, "app": ("users", "subscriptions", "api_keys")}[tier]
    with psycopg.connect(db.tier(tier)) as conn:
        # When a session that set no caller counts them
        for table in readable:
            column = "key_id" if table == "api_keys" else "id"
            count = conn.execute(f"SELECT count({column}) FROM {table}").fetchone()  # noqa: S608
            # Then it sees none: no setting means no rows, never all rows
            assert count == (0,), table


def test_a_caller_sees_only_their_own_subscriptions(db: MigratedDatabase):
    alice, bob = make_user(db), make_user(db)
    with psycopg.connect(db.tier("readonly")) as conn:
        as_caller(conn, alice)
        owners = conn.execute("SELECT user_id FROM subscriptions").fetchall()
        # Even asking for Bob's rows by id returns nothing
        bobs = conn.execute("SELECT * FROM subscriptions WHERE user_id = %s", (bob,)).fetchall()
    assert owners == [(alice,)]
    assert bobs == []


def test_a_caller_cannot_delete_or_update_another_users_subscription(db: MigratedDatabase):
    alice, bob = make_user(db), make_user(db)
    with db.admin() as admin:
        row = admin.execute("SELECT id FROM subscriptions WHERE user_id = %s", (bob,)).fetchone()
    assert row is not None
    bobs_subscription = row[0]
    with psycopg.connect(db.tier("app")) as conn:
        as_caller(conn, alice)
        # When Alice deletes Bob's subscription by its exact id
        deleted = conn.execute("DELETE FROM subscriptions WHERE id = %s", (bobs_subscription,))
        # Then nothing is deleted
        assert deleted.rowcount == 0
        conn.commit()
    with db.admin() as admin:
        still = admin.execute(
            "SELECT count(*) FROM subscriptions WHERE id = %s", (bobs_subscription,)
        )
        assert still.fetchone() == (1,)


def test_a_caller_cannot_insert_rows_for_another_user(db: MigratedDatabase):
    alice, bob = make_user(db), make_user(db)
    with psycopg.connect(db.tier("app")) as conn:
        as_caller(conn, alice)
        with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
            conn.execute(
                "INSERT INTO subscriptions (user_id, product) VALUES (%s, 'stroller')", (bob,)
            )


def test_an_admin_caller_reads_all_users_but_not_others_subscriptions(db: MigratedDatabase):
    admin_id, alice = make_user(db, role="admin"), make_user(db)
    with psycopg.connect(db.tier("readonly")) as conn:
        as_caller(conn, admin_id, role="admin")
        users = {row[0] for row in conn.execute("SELECT id FROM users")}
        keys = {row[0] for row in conn.execute("SELECT owner_id FROM api_keys")}
        subscriptions = {row[0] for row in conn.execute("SELECT user_id FROM subscriptions")}
    assert users == {admin_id, alice}
    assert keys == {admin_id, alice}
    assert subscriptions == {admin_id}


def test_claiming_admin_without_a_caller_id_sees_nothing(db: MigratedDatabase):
    make_user(db)
    with psycopg.connect(db.tier("readonly")) as conn:
        conn.execute("SELECT set_config('app.user_role', 'admin', true)")
        assert conn.execute("SELECT count(id) FROM users").fetchone() == (0,)


def test_caller_settings_end_with_the_transaction(db: MigratedDatabase):
    alice = make_user(db)
    with psycopg.connect(db.tier("readonly")) as conn:
        as_caller(conn, alice)
        assert conn.execute("SELECT count(*) FROM subscriptions").fetchone() == (1,)
        conn.rollback()
        # The next transaction on the same (pooled) connection has no caller
        assert conn.execute("SELECT count(*) FROM subscriptions").fetchone() == (0,)


def test_the_table_owner_is_bound_by_rls_too(db: MigratedDatabase):
    make_user(db)
    with psycopg.connect(db.tier("admin")) as conn:
        # FORCE ROW LEVEL SECURITY: the migrator, a member of the owner group, sees nothing
        assert conn.execute("SELECT count(*) FROM subscriptions").fetchone() == (0,)
