"""The app tier writes for a caller, and the audit log stays append-only for it."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import errors

from tests.support.postgres import MigratedDatabase, make_user


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


def _as_caller(conn: psycopg.Connection, user_id: uuid.UUID) -> None:
    conn.execute(
        "SELECT set_config('app.user_id', %s, true), set_config('app.user_role', 'user', true)",
        (str(user_id),),
    )


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO recalls (id, source_id, product, brand, hazard, remedy, recall_date) "
        "OVERRIDING SYSTEM VALUE SELECT g, 'taken-' || g, 'p', 'b', 'h', 'r', '2024-01-01' "
        "FROM generate_series(1, 50) AS g",
        "INSERT INTO recalls (source_id, product, brand, hazard, remedy, recall_date, "
        "created_at) VALUES ('old', 'p', 'b', 'h', 'r', '2024-01-01', '2001-01-01')",
        "UPDATE recalls SET created_at = '2001-01-01'",
    ],
    ids=["chosen-ids", "backdated-insert", "backdated-update"],
)
def test_the_app_tier_cannot_choose_a_recalls_id_or_creation_time(
    db: MigratedDatabase, statement: str
):
    """The app tier INSERTed and UPDATEd every column of recalls: injected SQL could take
    the ids the sequence hands out next (each later webhook insert then failed on the
    primary key) or backdate a recall. As for audit_log (sql/012), the database assigns
    both now; the API's upsert keeps working (tests/integration/api)."""
    with psycopg.connect(db.tier("app")) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement)


def test_a_key_cannot_name_another_owners_key_as_its_predecessor(db: MigratedDatabase):
    """Under RLS a key is the inserter's own row if owner_id is theirs, yet one naming
    Bob's key as rotated_from joined Bob's rotation chain: Bob's per-minute budget was
    shared with it and capped at its limit (sql/011), and Bob's own rotation refused
    (sql/009, one successor per key)."""
    bob, mallory = make_user(db), make_user(db)
    bobs_key = bob.hex[:12]
    with psycopg.connect(db.tier("app")) as conn:
        _as_caller(conn, mallory)
        with pytest.raises(errors.ForeignKeyViolation):
            conn.execute(
                "INSERT INTO api_keys (key_id, owner_id, secret_hash, scopes, "
                "rate_limit_per_minute, rotated_from) "
                "VALUES ('mallorykey01', %s, '\\x00', '{recalls:read}', 1, %s)",
                (mallory, bobs_key),
            )
    with psycopg.connect(db.tier("readonly")) as conn:
        chain = conn.execute(
            "SELECT first_key_id, rate_limit_per_minute FROM auth.api_key_chain(%s)",
            (bobs_key,),
        ).fetchone()
    assert chain == (bobs_key, 60)


def test_a_key_may_name_its_owners_own_key_as_its_predecessor(db: MigratedDatabase):
    alice = make_user(db)
    with psycopg.connect(db.tier("app")) as conn:
        _as_caller(conn, alice)
        conn.execute(
            "INSERT INTO api_keys (key_id, owner_id, secret_hash, scopes, rotated_from) "
            "VALUES ('alicekey0002', %s, '\\x00', '{recalls:read}', %s)",
            (alice, alice.hex[:12]),
        )
    with psycopg.connect(db.tier("readonly")) as conn:
        chain = conn.execute(
            "SELECT first_key_id FROM auth.api_key_chain('alicekey0002')"
        ).fetchone()
    assert chain == (alice.hex[:12],)


def test_the_app_tier_cannot_backdate_a_keys_creation(db: MigratedDatabase):
    alice = make_user(db)
    with psycopg.connect(db.tier("app")) as conn:
        _as_caller(conn, alice)
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO api_keys (key_id, owner_id, secret_hash, scopes, created_at) "
                "VALUES ('alicekey0003', %s, '\\x00', '{recalls:read}', '2001-01-01')",
                (alice,),
            )
