"""The deploy-time migration function: admin secret in, migrations applied, idempotent."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import psycopg
import pytest

from functions.migrate.run import run_migrations
from functions.shared import names
from functions.shared.db.migrations import load_migrations
from functions.shared.db.roles import RoleNames
from tests.support.postgres import admin_secret_value, fresh_database


@pytest.fixture
def admin_secret_for_fresh_database(
    aws: str, pg_cluster: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, RoleNames]]:
    """An empty database whose credentials sit in the db-admin secret (moto)."""
    # Local mode: the test server has no TLS; the secret is still the source.
    monkeypatch.setenv("BABYSHIELD_ENV", "local")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with fresh_database(pg_cluster) as (conninfo, roles):
        value = admin_secret_value(conninfo)
        boto3.client("secretsmanager", endpoint_url=aws).create_secret(
            Name=names.secret_name("db-admin"), SecretString=json.dumps(value)
        )
        yield conninfo, roles


def test_first_run_applies_every_migration_and_second_run_none(
    admin_secret_for_fresh_database: tuple[str, RoleNames],
):
    conninfo, roles = admin_secret_for_fresh_database

    # When the function runs on a fresh database, twice
    first = run_migrations(roles)
    second = run_migrations(roles)

    # Then the first applies every file of sql/ and the second finds nothing to do
    assert first == {"applied": [m.name for m in load_migrations()]}
    assert second == {"applied": []}
    with psycopg.connect(conninfo) as conn:
        count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert count == (len(load_migrations()),)
