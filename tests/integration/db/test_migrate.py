"""Migrations: `babyshield db migrate` on a fresh database, twice, and what a failing
or edited migration does."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from functions.shared.db.migrations import (
    DEFAULT_DIRECTORY,
    MigrationError,
    apply_migrations,
    load_migrations,
)
from ops.cli import main
from tests.support.postgres import fresh_database


def test_migrate_twice_on_a_fresh_database_succeeds_and_the_second_is_a_no_op(
    pg_cluster: str, capsys: pytest.CaptureFixture[str]
):
    with fresh_database(pg_cluster) as (conninfo, roles):
        # When the command runs twice
        first = main(["db", "migrate", "--database-url", conninfo, "--role-prefix", roles.prefix])
        first_out = capsys.readouterr().out
        second = main(["db", "migrate", "--database-url", conninfo, "--role-prefix", roles.prefix])
        second_out = capsys.readouterr().out
        # Then both succeed, the first applied every file, the second nothing
        assert (first, second) == (0, 0)
        assert [line.split()[-1] for line in first_out.splitlines()] == [
            m.name for m in load_migrations()
        ]
        assert second_out.strip() == "database is up to date"
        with psycopg.connect(conninfo) as conn:
            recorded = conn.execute("SELECT name FROM schema_migrations ORDER BY version")
            assert [r[0] for r in recorded] == [m.name for m in load_migrations()]


def test_pgaudit_setup_leaves_a_server_without_pgaudit_untouched(pg_cluster: str):
    """008 acts only where pgaudit is preloaded (RDS); anywhere else it must not add a
    cluster-wide role or try an extension the server cannot load."""
    with fresh_database(pg_cluster) as (conninfo, roles), psycopg.connect(conninfo) as conn:
        preloaded = conn.execute("SHOW shared_preload_libraries").fetchone()
        assert preloaded is not None
        if "pgaudit" in str(preloaded[0]):
            pytest.skip("this server preloads pgaudit")
        had_role = conn.execute("SELECT to_regrole('rds_pgaudit') IS NOT NULL").fetchone()
        apply_migrations(conninfo, roles=roles)
        assert "008_pgaudit.sql" in {m.name for m in load_migrations()}
        assert conn.execute("SELECT to_regrole('rds_pgaudit') IS NOT NULL").fetchone() == had_role
        assert conn.execute(
            "SELECT count(*) FROM pg_extension WHERE extname = 'pgaudit'"
        ).fetchone() == (0,)


def test_role_settings_are_visible_in_the_catalogs(pg_cluster: str):
    with fresh_database(pg_cluster) as (conninfo, roles):
        apply_migrations(conninfo, roles=roles)
        with psycopg.connect(conninfo) as conn:
            limits: dict[str, int] = dict(
                conn.execute(
                    "SELECT rolname, rolconnlimit FROM pg_roles WHERE rolname = ANY(%s)",
                    (list(roles.all()),),
                ).fetchall()
            )
            logins: dict[str, bool] = dict(
                conn.execute(
                    "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(%s)",
                    (list(roles.all()),),
                ).fetchall()
            )
            settings: dict[str, list[str]] = dict(
                conn.execute(
                    "SELECT r.rolname, s.setconfig FROM pg_db_role_setting s "
                    "JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = ANY(%s)",
                    (list(roles.all()),),
                ).fetchall()
            )
    for role in roles.login_roles("readonly"):
        assert limits[role] == 100
        assert set(settings[role]) >= {
            "statement_timeout=30s",
            "default_transaction_read_only=on",
        }
    for role in roles.login_roles("app"):
        assert limits[role] == 50
        assert "statement_timeout=60s" in settings[role]
    # The group roles hold no settings (sql/020): rotation restores a login's from
    # code, never from a role a login may SET ROLE to and alter.
    for group in (roles.readonly, roles.app):
        assert not settings.get(group), group
    assert limits[roles.migrator] == 5
    # Privileges live on group roles that cannot log in
    assert not any(logins[g] for g in (roles.readonly, roles.app, roles.admin, roles.auth_lookup))
    assert all(logins[r] for r in (*roles.login_roles("readonly"), *roles.login_roles("app")))


def test_a_failing_migration_leaves_nothing_of_itself(pg_cluster: str, tmp_path: Path):
    # Given the real migrations plus one that creates a table and then fails
    for path in DEFAULT_DIRECTORY.glob("*.sql"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "900_broken.sql").write_text(
        "CREATE TABLE public.half_done (x int);\nSELECT 1/0;\n"
    )
    with fresh_database(pg_cluster) as (conninfo, roles):
        # When it is applied
        with pytest.raises(MigrationError, match=r"900_broken\.sql failed"):
            apply_migrations(conninfo, directory=tmp_path, roles=roles)
        # Then the earlier files are recorded, the broken one left no table and no record
        with psycopg.connect(conninfo) as conn:
            assert conn.execute("SELECT to_regclass('public.half_done')").fetchone() == (None,)
            versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
        assert "900" not in versions
        assert len(versions) == len(load_migrations())


def test_an_applied_migration_that_was_edited_is_refused(pg_cluster: str, tmp_path: Path):
    for path in DEFAULT_DIRECTORY.glob("*.sql"):
        shutil.copy(path, tmp_path / path.name)
    with fresh_database(pg_cluster) as (conninfo, roles):
        apply_migrations(conninfo, directory=tmp_path, roles=roles)
        schema = tmp_path / "002_schema.sql"
        schema.write_text(schema.read_text() + "\n-- edited\n")
        with pytest.raises(MigrationError, match=r"002_schema\.sql was applied with different"):
            apply_migrations(conninfo, directory=tmp_path, roles=roles)


def test_migrate_without_a_reachable_database_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str],
):
    code = main(
        [
            "db",
            "migrate",
            "--database-url",
            "postgresql://nobody@127.0.0.1:9/none?connect_timeout=1",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: cannot connect to the database")
    assert "Traceback" not in err
