"""The migrations as AWS runs them, by RDS's master user (not a superuser), and what a
later migration's objects and role changes leave behind. Every other test migrates as
the cluster's superuser, which may take any role: a file that only a superuser can
apply passes there and fails every deploy."""

from __future__ import annotations

import contextlib
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from functions.shared.db.migrations import DEFAULT_DIRECTORY, MigrationError, apply_migrations
from functions.shared.db.roles import RoleNames
from tests.support.postgres import fresh_database

REPO = Path(__file__).resolve().parents[3]
SQL_FILES = sorted(p.name for p in DEFAULT_DIRECTORY.glob("*.sql"))


def copy_migrations(target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in SQL_FILES:
        shutil.copy(DEFAULT_DIRECTORY / name, target / name)
    return target


@pytest.fixture
def fresh(pg_cluster: str) -> Iterator[tuple[str, RoleNames]]:
    with fresh_database(pg_cluster) as pair:
        yield pair


@contextlib.contextmanager
def rds_like_master(cluster: str) -> Iterator[tuple[str, RoleNames]]:
    """A database owned by a login shaped like RDS's master user: LOGIN, CREATEROLE,
    CREATEDB, NOT a superuser, with what rds_superuser passes on to it (pg_monitor,
    hence pg_read_all_settings, which 008 needs to read shared_preload_libraries; and
    pg_signal_backend with ADMIN OPTION, which 007 grants on). Yields its conninfo and
    a private role prefix; drops everything afterwards."""
    token = secrets.token_hex(4)
    master = f"bsrvm{token}_master"
    database = f"babyshield_rdslike_{token}"
    password = secrets.token_urlsafe(18)
    roles = RoleNames.with_prefix(f"bsrv{token}")
    with psycopg.connect(cluster, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB NOSUPERUSER PASSWORD {}").format(
                sql.Identifier(master), sql.Literal(password)
            )
        )
        conn.execute(sql.SQL("GRANT pg_monitor TO {}").format(sql.Identifier(master)))
        conn.execute(
            sql.SQL("GRANT pg_signal_backend TO {} WITH ADMIN OPTION").format(
                sql.Identifier(master)
            )
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(master)
            )
        )
    try:
        yield make_conninfo(cluster, dbname=database, user=master, password=password), roles
    finally:
        with psycopg.connect(cluster, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
            for role in roles.all():
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(master)))


def test_every_migration_applies_as_a_non_superuser_master_user_as_in_rds(pg_cluster: str):
    """In AWS the migrations run as RDS's master user (docs/DATABASE.md: "The first run
    needs a role that may create roles (the RDS master user ...)"), which is not a
    superuser. 021 does `SET LOCAL ROLE {{auth_lookup}}` without first granting that
    role to CURRENT_USER, as 006, 011, 013, 015 and 018 all do (006 ends by revoking
    the membership, and the implicit grant a PostgreSQL 16+ CREATEROLE user gets on a
    role it creates carries SET FALSE). Every test migrates as the cluster's
    superuser, which may SET ROLE to anything, so this never showed: in RDS every
    deploy that carried 021 failed there, and no later migration could apply."""
    with rds_like_master(pg_cluster) as (conninfo, roles):
        try:
            applied = apply_migrations(conninfo, roles=roles)
        except MigrationError as exc:
            pytest.fail(f"the master user's deploy fails: {exc}")
        assert applied == SQL_FILES
        with psycopg.connect(conninfo) as conn:
            configs = conn.execute(
                "SELECT p.proconfig FROM pg_catalog.pg_proc p "
                "WHERE p.prosecdef AND p.pronamespace = 'auth'::regnamespace"
            ).fetchall()
        assert configs
        assert all("search_path=pg_catalog, public, pg_temp" in row[0] for row in configs)


def test_a_migration_that_widens_a_tier_role_leaves_nothing_and_stays_refused(
    fresh: tuple[str, RoleNames], tmp_path: Path
):
    """A migration that gives the read-only login BYPASSRLS is refused, and rolls back:
    checked once every file had committed, it failed the deploy yet stayed applied and
    recorded, the read-only tier read every account's rows from then on, and the
    retried deploy (nothing left to apply) only logged the problem and succeeded."""
    conninfo, roles = fresh
    directory = copy_migrations(tmp_path / "sql")
    apply_migrations(conninfo, directory=directory, roles=roles)
    (directory / "097_reporting_reads.sql").write_text("ALTER ROLE {{readonly_a}} BYPASSRLS;\n")

    with pytest.raises(MigrationError, match="request-tier roles can do more"):
        apply_migrations(conninfo, directory=directory, roles=roles)

    with psycopg.connect(conninfo) as conn:
        bypass = conn.execute(
            "SELECT rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = %s",
            (roles.readonly_a,),
        ).fetchone()
        recorded = conn.execute(
            "SELECT count(*) FROM public.schema_migrations WHERE version = '097'"
        ).fetchone()
    assert bypass == (False,), "the refused migration's BYPASSRLS stayed committed"
    assert recorded == (0,), "the refused migration is recorded as applied"
    # and the same deploy, retried, is refused again rather than going through
    with pytest.raises(MigrationError, match="request-tier roles can do more"):
        apply_migrations(conninfo, directory=directory, roles=roles)


def test_a_function_a_later_migration_adds_is_executable_only_where_granted(
    fresh: tuple[str, RoleNames], tmp_path: Path
):
    """PostgreSQL grants PUBLIC EXECUTE on every new function. A later lookup written
    the way 011 wrote auth.api_key_chain, granted to the read-only tier but without its
    `REVOKE ALL ... FROM PUBLIC`, would run for the app tier too (both have USAGE on
    auth): sql/022's default privileges for the owning roles make the omission
    harmless."""
    conninfo, roles = fresh
    directory = copy_migrations(tmp_path / "sql")
    (directory / "097_user_count.sql").write_text(
        "GRANT {{auth_lookup}} TO CURRENT_USER;\n"
        "SET LOCAL ROLE {{admin}};\n"
        "GRANT CREATE ON SCHEMA auth TO {{auth_lookup}};\n"
        "SET LOCAL ROLE {{auth_lookup}};\n"
        "CREATE FUNCTION auth.user_count() RETURNS bigint\n"
        "    LANGUAGE sql STABLE SECURITY DEFINER\n"
        "    SET search_path = pg_catalog, public, pg_temp\n"
        "    AS $$ SELECT count(*) FROM public.users $$;\n"
        "GRANT EXECUTE ON FUNCTION auth.user_count() TO {{readonly}};\n"
        "RESET ROLE;\n"
        "REVOKE CREATE ON SCHEMA auth FROM {{auth_lookup}};\n"
        "REVOKE {{auth_lookup}} FROM CURRENT_USER;\n"
    )
    apply_migrations(conninfo, directory=directory, roles=roles)

    with psycopg.connect(conninfo) as conn:
        rights = {
            role: conn.execute(
                "SELECT has_function_privilege(%s, 'auth.user_count()', 'EXECUTE')", (role,)
            ).fetchone()
            for role in (roles.readonly_a, roles.app_a)
        }
    assert rights[roles.readonly_a] == (True,)
    assert rights[roles.app_a] == (False,), (
        "the app tier may run a definer function granted only to the read-only tier"
    )


def test_a_database_that_applied_021_before_its_grant_is_not_refused(
    fresh: tuple[str, RoleNames],
):
    """021 gained the grant that lets a non-superuser apply it; databases where a
    superuser applied the first text (every local stack) keep migrating. Any other
    text recorded for it is still refused as an edited migration."""
    from functions.shared.db.migrations import _FIRST_021_SHA256

    conninfo, roles = fresh
    apply_migrations(conninfo, roles=roles)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "UPDATE public.schema_migrations SET checksum = %s WHERE version = '021'",
            (_FIRST_021_SHA256,),
        )
    assert apply_migrations(conninfo, roles=roles) == []

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("UPDATE public.schema_migrations SET checksum = 'x' WHERE version = '021'")
    with pytest.raises(MigrationError, match=r"021_.*applied with different contents"):
        apply_migrations(conninfo, roles=roles)
