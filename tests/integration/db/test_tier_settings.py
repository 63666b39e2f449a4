"""A tier login's fences (statement_timeout, default_transaction_read_only,
idle_in_transaction_session_timeout, client_connection_check_interval) are role
defaults, and any role may change its
own. Rotation puts them back on a login before arming it, from values no tier can
change: the logins may SET ROLE to their group, so a template kept on the group
(sql/010, until sql/020) was theirs to rewrite."""

from __future__ import annotations

import contextlib

import psycopg
import pytest
from psycopg import errors, sql

from functions.shared.db.roles import TIER_LOGIN_SETTINGS
from tests.support.postgres import MigratedDatabase

LIFTED = {
    "statement_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    "default_transaction_read_only": "off",
    "client_connection_check_interval": "0",
}

# What a login of each tier shows in a session (sql/003, sql/004, sql/024).
SHOWN = {
    "readonly": {
        "statement_timeout": ("30s",),
        "idle_in_transaction_session_timeout": ("1min",),
        "default_transaction_read_only": ("on",),
        "client_connection_check_interval": ("10s",),
    },
    "app": {
        "statement_timeout": ("1min",),
        "idle_in_transaction_session_timeout": ("1min",),
        "default_transaction_read_only": ("off",),
        "client_connection_check_interval": ("10s",),
    },
}


def _stored(conn: psycopg.Connection[tuple[object, ...]], role: str) -> list[str]:
    row = conn.execute(
        "SELECT coalesce(s.setconfig, '{}') FROM pg_catalog.pg_roles r "
        "LEFT JOIN pg_catalog.pg_db_role_setting s ON s.setrole = r.oid AND s.setdatabase = 0 "
        "WHERE r.rolname = %s",
        (role,),
    ).fetchone()
    assert row is not None
    entries = row[0]
    assert isinstance(entries, list)
    return sorted(str(entry) for entry in entries)


def _shown(db: MigratedDatabase, login: str) -> dict[str, tuple[object, ...] | None]:
    with psycopg.connect(db.conninfo(login)) as conn:
        return {
            name: conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
            for name in LIFTED
        }


@pytest.mark.parametrize("tier", ["readonly", "app"])
def test_the_settings_rotation_restores_are_what_the_migrations_give_a_login(
    db: MigratedDatabase, tier: str
):
    """The code's copy and sql/003, 004 and 024 say the same, so a fresh login and a
    rotated one carry the same fences."""
    with db.admin() as admin:
        for login in db.roles.login_roles(tier):
            assert _stored(admin, login) == sorted(
                f"{name}={value}" for name, value in TIER_LOGIN_SETTINGS[tier].items()
            )


@pytest.mark.parametrize("tier", ["readonly", "app"])
def test_a_login_that_lifts_its_groups_settings_gets_its_fences_back_at_rotation(
    db: MigratedDatabase, tier: str
):
    """A leaked or injected login names itself its group (SET ROLE) and lifts the
    group's defaults, as well as its own. The next rotation arms it with its tier's
    fences all the same, not with whatever the group holds."""
    from functions.rotate_db.database import restore_login_settings

    group = getattr(db.roles, tier)
    login = db.roles.login_roles(tier)[1]  # the _b login: other tests connect as _a
    try:
        with (
            psycopg.connect(db.conninfo(login), autocommit=True) as conn,
            contextlib.suppress(errors.InsufficientPrivilege),
        ):
            conn.execute("SET default_transaction_read_only = off")  # a session may
            for role in (login, group):
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
                for name, value in LIFTED.items():
                    conn.execute(
                        sql.SQL("ALTER ROLE {} SET {} = {}").format(
                            sql.Identifier(role), sql.Identifier(name), sql.Literal(value)
                        )
                    )
        assert _shown(db, login) != SHOWN[tier]  # the fences are off
        with db.admin() as admin:
            restore_login_settings(admin, login, tier)
        assert _shown(db, login) == SHOWN[tier]
    finally:
        with db.admin() as admin:
            admin.execute(sql.SQL("ALTER ROLE {} RESET ALL").format(sql.Identifier(group)))
            restore_login_settings(admin, login, tier)
