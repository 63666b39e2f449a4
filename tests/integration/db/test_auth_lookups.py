"""The pre-authentication lookups: the only way to reach a password or key hash before
a caller is known, open to the read-only and app tiers and to nobody else."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import errors

from tests.support.postgres import MigratedDatabase


def _user_with_key(db: MigratedDatabase) -> uuid.UUID:
    user_id = uuid.uuid4()
    with db.admin() as conn:
        conn.execute(
            "INSERT INTO users (id, email, password_hash, role) "
            "VALUES (%s, 'parent@example.com', 'scrypt$hash', 'admin')",
            (user_id,),
        )
        conn.execute(
            "INSERT INTO api_keys (key_id, owner_id, secret_hash, scopes) "
            "VALUES ('k123', %s, '\\xdeadbeef', '{admin}')",
            (user_id,),
        )
    return user_id


@pytest.mark.parametrize("tier", ["readonly", "app"])
def test_sign_in_lookup_works_without_a_caller(db: MigratedDatabase, tier: str):
    user_id = _user_with_key(db)
    with psycopg.connect(db.tier(tier)) as conn:
        # The email is matched case-insensitively, as it is stored lower-case
        found = conn.execute(
            "SELECT * FROM auth.user_for_login(%s)", ("Parent@Example.com",)
        ).fetchall()
        key = conn.execute("SELECT * FROM auth.api_key_for_lookup(%s)", ("k123",)).fetchone()
    assert found == [(user_id, "scrypt$hash", "admin")]
    assert key is not None
    assert key[0] == "k123"
    assert bytes(key[2]) == b"\xde\xad\xbe\xef"
    assert key[-1] == "admin"


def test_lookups_return_nothing_for_unknown_or_crafted_input(db: MigratedDatabase):
    _user_with_key(db)
    with psycopg.connect(db.tier("readonly")) as conn:
        for crafted in ("nobody@example.com", "' OR '1'='1", "%", "*"):
            assert (
                conn.execute("SELECT * FROM auth.user_for_login(%s)", (crafted,)).fetchall() == []
            )
            assert (
                conn.execute("SELECT * FROM auth.api_key_for_lookup(%s)", (crafted,)).fetchall()
                == []
            )


def test_lookups_are_closed_to_roles_outside_the_two_tiers(db: MigratedDatabase):
    # The migrator (admin tier) has no EXECUTE: the grant went to readonly and app only
    with psycopg.connect(db.tier("admin")) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM auth.user_for_login('parent@example.com')")


def test_lookups_run_with_a_fixed_search_path(db: MigratedDatabase):
    with db.admin() as conn:
        settings = conn.execute(
            "SELECT p.proname, p.prosecdef, p.proconfig FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'auth' AND p.proname IN ('user_for_login', 'api_key_for_lookup')"
        ).fetchall()
    assert len(settings) == 2
    for _name, security_definer, config in settings:
        assert security_definer is True
        assert config == ["search_path=pg_catalog, public"]
