"""A private, password-checking database with the three tiers' secrets on moto.

The rotation tests share one migrated database of their own on the scram-sha-256
cluster, so rotating its logins' passwords cannot disturb any other test. Each test then
gives the logins fresh passwords and stores them as the secrets' first values.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from functions.shared.inventory import spec
from functions.shared.rotation.driver import LocalRotationDriver, seed_secret
from functions.shared.rotation.store import SecretStore
from tests.support.postgres import MigratedDatabase, private_database
from tests.support.tcp_proxy import TcpProxy

TIERS = {"db-readonly": "readonly", "db-app": "app", "db-admin": "admin"}


@pytest.fixture(scope="session")
def rotation_db(scram_cluster: str) -> Iterator[MigratedDatabase]:
    with private_database(scram_cluster) as database:
        yield database


@dataclass
class DatabaseSecrets:
    database: MigratedDatabase
    store: SecretStore
    proxy: TcpProxy

    def login_for(self, name: str) -> str:
        return self.database.roles.login_roles(TIERS[name])[0]

    def current(self, name: str) -> dict[str, Any]:
        found = self.store.read(spec(name).secret_name, stage="AWSCURRENT")
        assert found is not None
        return found.value

    @staticmethod
    def tier_settings(tier: str) -> list[str]:
        """What rotation gives a login of `tier`, stored as settings_of() reads it."""
        from functions.shared.db.roles import TIER_LOGIN_SETTINGS

        return sorted(f"{name}={value}" for name, value in TIER_LOGIN_SETTINGS[tier].items())

    def settings_of(self, login: str) -> dict[int, list[str]]:
        """A role's stored defaults by database oid (0: every database)."""
        with self.database.admin() as conn:
            rows = conn.execute(
                "SELECT s.setdatabase, s.setconfig FROM pg_db_role_setting s "
                "JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = %s",
                (login,),
            ).fetchall()
        found: dict[int, list[str]] = {}
        for database, config in rows:
            assert isinstance(config, list)
            found[int(str(database))] = sorted(str(entry) for entry in config)
        return found

    def session_as(self, value: dict[str, Any]) -> psycopg.Connection[tuple[Any, ...]]:
        """An autocommit session with a secret's value, as a client holding it opens one."""
        return psycopg.connect(
            self.database.admin_conninfo,
            user=value["username"],
            password=value["password"],
            autocommit=True,
        )

    def logs_in(self, value: dict[str, Any]) -> bool:
        """Direct to the cluster (not through the proxy): does the server accept it?"""
        try:
            with psycopg.connect(
                self.database.admin_conninfo,
                user=value["username"],
                password=value["password"],
                connect_timeout=5,
            ):
                return True
        except psycopg.OperationalError as exc:
            if "password authentication failed" in str(exc):
                return False
            raise

    def agree(self, name: str) -> bool:
        """The invariant: the AWSCURRENT value is a login the database accepts."""
        return self.logs_in(self.current(name))


@contextmanager
def database_secrets(
    database: MigratedDatabase, store: SecretStore, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DatabaseSecrets]:
    """The three database secrets on moto, each on a fresh password of `database`."""
    # Local mode: the test cluster has no TLS; in AWS the same code uses verify-full.
    monkeypatch.setenv("BABYSHIELD_ENV", "local")
    for variable in ("DATABASE_URL", "DATABASE_READONLY_URL", "DATABASE_APP_URL"):
        monkeypatch.delenv(variable, raising=False)
    target = conninfo_to_dict(database.admin_conninfo)
    proxy = TcpProxy(str(target["host"]), int(str(target["port"])))
    endpoint = {
        "engine": "postgres",
        "host": "127.0.0.1",
        "port": proxy.port,
        "dbname": database.name,
    }
    admin_login = database.roles.migrator
    database.set_password(admin_login, secrets.token_urlsafe(18))
    seed_secret(
        store,
        spec("db-admin"),
        {**endpoint, "username": admin_login, "password": database.passwords[admin_login]},
    )
    admin_arn = store.describe(spec("db-admin").secret_name).arn
    for name in ("db-readonly", "db-app"):
        login = database.roles.login_roles(TIERS[name])[0]
        database.set_password(login, secrets.token_urlsafe(18))
        seed_secret(
            store,
            spec(name),
            {
                **endpoint,
                "username": login,
                "password": database.passwords[login],
                "masterarn": admin_arn,
            },
        )
    try:
        yield DatabaseSecrets(database, store, proxy)
    finally:
        proxy.close()


@pytest.fixture
def db_secrets(
    rotation_db: MigratedDatabase, store: SecretStore, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DatabaseSecrets]:
    with database_secrets(rotation_db, store, monkeypatch) as found:
        yield found


@pytest.fixture
def db_driver(db_secrets: DatabaseSecrets) -> LocalRotationDriver:
    return LocalRotationDriver(store=db_secrets.store, backoff_seconds=0.0)


def database_down_for_finish(db_secrets: DatabaseSecrets) -> LocalRotationDriver:
    """A driver whose finishSecret meets the database down: after the promotion."""
    from functions.rotate_db.handler import lambda_handler

    def handler(event: Mapping[str, Any], context: Any) -> Any:
        if event["Step"] == "finishSecret":
            db_secrets.proxy.down()
        return lambda_handler(event, context)

    return LocalRotationDriver(store=db_secrets.store, handler=handler, backoff_seconds=0.0)
