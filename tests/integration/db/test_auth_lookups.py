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


def test_sign_in_lookup_works_without_a_caller(db: MigratedDatabase):
    user_id = _user_with_key(db)
    with psycopg.connect(db.tier("readonly")) as conn:
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
            "WHERE n.nspname = 'auth' "
            "AND p.proname IN ('user_for_login', 'api_key_for_lookup', 'api_key_chain')"
        ).fetchall()
    assert len(settings) == 3
    for _name, security_definer, config in settings:
        assert security_definer is True
        assert config == ["search_path=pg_catalog, public, pg_temp"]


def test_every_security_definer_function_searches_the_temporary_schema_last(
    db: MigratedDatabase,
):
    """Without pg_temp in a function's search_path, PostgreSQL searches a session's
    temporary schema first for tables and types: a caller able to create a temporary
    table could shadow what a SECURITY DEFINER function reads. No tier holds TEMP on
    this database today; naming pg_temp last keeps that from ever mattering."""
    with db.admin() as conn:
        found = conn.execute(
            "SELECT p.oid::regprocedure::text, p.proconfig FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE p.prosecdef AND n.nspname IN ('auth', 'public')"
        ).fetchall()
    assert found, "the lookups are SECURITY DEFINER functions"
    for function, config in found:
        assert isinstance(config, list), function
        paths = [str(entry) for entry in config if str(entry).startswith("search_path=")]
        assert len(paths) == 1, function
        assert paths[0].endswith(", pg_temp"), (function, paths[0])


def _chain(db: MigratedDatabase, *limits: int) -> list[str]:
    """Keys k0 -> k1 -> ... each rotated from the one before, with the given limits."""
    user_id = _user_with_key(db)
    ids = [f"k{i}" for i in range(len(limits))]
    with db.admin() as conn:
        for i, (key_id, limit) in enumerate(zip(ids, limits, strict=True)):
            conn.execute(
                "INSERT INTO api_keys (key_id, owner_id, secret_hash, scopes, "
                "rate_limit_per_minute, rotated_from) VALUES (%s, %s, '\\x00', '{}', %s, %s)",
                (key_id, user_id, limit, ids[i - 1] if i else None),
            )
    return ids


def _execute(db: MigratedDatabase, statement: str) -> None:
    with db.admin() as conn:
        conn.execute(statement)


def _chain_of(db: MigratedDatabase, key_id: str) -> list[tuple[str, int]]:
    with psycopg.connect(db.tier("readonly")) as conn:
        return conn.execute("SELECT * FROM auth.api_key_chain(%s)", (key_id,)).fetchall()


def test_every_key_of_a_rotation_chain_names_its_first_key(db: MigratedDatabase):
    # Given a key rotated twice, all three still live (grace periods overlapping)
    ids = _chain(db, 5, 5, 5)
    # Then each names the first key and the chain's limit
    for key_id in ids:
        assert _chain_of(db, key_id) == [("k0", 5)]
    # And a key outside the chain names itself
    assert _chain_of(db, "k123") == [("k123", 60)]
    # And an unknown key has no row
    assert _chain_of(db, "nope") == []


def test_the_smallest_limit_of_the_live_keys_applies_to_the_chain(db: MigratedDatabase):
    # Given a chain whose middle key has a lower limit
    ids = _chain(db, 9, 4, 7)
    assert [_chain_of(db, key_id)[0][1] for key_id in ids] == [4, 4, 4]
    # When that key is revoked, its limit binds only itself
    _execute(db, "UPDATE api_keys SET revoked_at = now() WHERE key_id = 'k1'")
    assert [_chain_of(db, key_id)[0][1] for key_id in ids] == [7, 4, 7]
    # And an expired key stops binding the others too
    _execute(db, "UPDATE api_keys SET expires_at = now() WHERE key_id = 'k2'")
    assert [_chain_of(db, key_id)[0][1] for key_id in ids] == [9, 4, 7]


def test_keys_after_a_deleted_predecessor_still_share_its_id(db: MigratedDatabase):
    # Given a chain whose first key's row was deleted by hand
    _chain(db, 3, 3, 3)
    _execute(db, "DELETE FROM api_keys WHERE key_id = 'k0'")
    # Then the keys left still name one first key, the deleted one's id
    assert _chain_of(db, "k1") == [("k0", 3)]
    assert _chain_of(db, "k2") == [("k0", 3)]


def test_a_hand_made_cycle_ends_the_walk(db: MigratedDatabase):
    # Given rotated_from edited by hand into a loop (no API path can do this)
    _chain(db, 3, 3)
    _execute(db, "UPDATE api_keys SET rotated_from = 'k1' WHERE key_id = 'k0'")
    # Then the lookup answers at once, each key counting as itself
    assert _chain_of(db, "k0") == [("k0", 3)]
    assert _chain_of(db, "k1") == [("k1", 3)]


def test_the_chain_lookup_is_closed_to_roles_outside_the_two_tiers(db: MigratedDatabase):
    with psycopg.connect(db.tier("admin")) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM auth.api_key_chain('k123')")


def test_only_the_read_only_tier_runs_the_lookups(db: MigratedDatabase):
    """The lookups answer a hash for an e-mail; the app tier, which may rehash a
    password given the stored hash, must not be able to read one (sql/015)."""
    _user_with_key(db)
    for lookup in ("auth.user_for_login('parent@example.com')", "auth.api_key_for_lookup('k123')"):
        with psycopg.connect(db.tier("app")) as conn, pytest.raises(errors.InsufficientPrivilege):
            conn.execute(f"SELECT * FROM {lookup}")  # noqa: S608 - fixed text
