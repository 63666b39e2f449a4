"""Who may change a password: in AWS only rds_password members (sql/014)."""

from __future__ import annotations

from functions.shared.db.migrations import load_migrations
from tests.support.postgres import MigratedDatabase


def test_in_aws_the_migrating_login_joins_rds_password(db: MigratedDatabase):
    """With rds.restrict_password_commands on (cdk/network.py) only rds_password members
    change passwords; sql/014 makes the login that migrates and rotates one. Here an
    RDS-like cluster is staged inside a transaction that is rolled back: roles are
    cluster-wide and the cluster is shared."""
    (migration,) = [m for m in load_migrations() if m.name.startswith("014_")]
    with db.admin() as conn, conn.transaction(force_rollback=True):
        conn.execute("CREATE ROLE rds_password NOLOGIN")
        conn.execute("CREATE ROLE staged_master NOLOGIN CREATEROLE")
        conn.execute("SET LOCAL ROLE staged_master")
        conn.execute(migration.render(db.roles).encode())
        conn.execute(migration.render(db.roles).encode())  # re-applying changes nothing
        conn.execute("RESET ROLE")
        member = conn.execute("SELECT pg_has_role('staged_master', 'rds_password', 'MEMBER')")
        assert member.fetchone() == (True,)


def test_a_refused_grant_does_not_fail_the_deploy(db: MigratedDatabase):
    """rds_superuser holds rds_password by default; should RDS still refuse the grant,
    the migration goes on (a rotation refused for want of it fails loudly later)."""
    (migration,) = [m for m in load_migrations() if m.name.startswith("014_")]
    with db.admin() as conn, conn.transaction(force_rollback=True):
        conn.execute("CREATE ROLE rds_password NOLOGIN")
        conn.execute("CREATE ROLE staged_master NOLOGIN")  # no right to grant roles
        conn.execute("SET LOCAL ROLE staged_master")
        conn.execute(migration.render(db.roles).encode())
        conn.execute("RESET ROLE")
        member = conn.execute("SELECT pg_has_role('staged_master', 'rds_password', 'MEMBER')")
        assert member.fetchone() == (False,)
