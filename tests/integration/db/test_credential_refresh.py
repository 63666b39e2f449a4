"""Credentials from Secrets Manager (moto over HTTP) against a cluster that checks
passwords with scram-sha-256: a rotation under a warm pool costs one refetch and no
failed request; a secret that is still wrong fails cleanly after exactly one refetch."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import boto3
import psycopg
import pytest

from functions.shared import names
from functions.shared.db import DatabaseUnavailable, readonly_session
from functions.shared.db import credentials as credentials_module
from functions.shared.db.credentials import SecretCredentials
from functions.shared.db.pools import close_pools, with_credentials
from functions.shared.settings import get_settings
from tests.support.postgres import MigratedDatabase

SECRET = names.secret_name("db-readonly")


@pytest.fixture
def fetches(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record every Secrets Manager read (True: a forced refetch); reads stay real."""
    calls: list[bool] = []
    real = credentials_module.fetch_secret_string

    def counting(secret_id: str, force: bool) -> str:
        calls.append(force)
        return real(secret_id, force)

    monkeypatch.setattr(credentials_module, "fetch_secret_string", counting)
    return calls


@pytest.fixture
def secret_backed(
    scram_db: MigratedDatabase, aws: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MigratedDatabase]:
    """Local mode without a URL override: the read-only tier reads its secret."""
    monkeypatch.setenv("BABYSHIELD_ENV", "local")
    monkeypatch.delenv("DATABASE_READONLY_URL", raising=False)
    monkeypatch.setenv("DB_POOL_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("DB_POOL_MAX_SIZE", "1")
    get_settings.cache_clear()
    close_pools()
    yield scram_db
    close_pools()


def _secret_value(db: MigratedDatabase, password: str) -> str:
    parameters = db.parameters
    return json.dumps(
        {
            "engine": "postgres",
            "host": parameters["host"],
            "port": int(str(parameters["port"])),
            "dbname": db.name,
            "username": db.roles.readonly_a,
            "password": password,
        }
    )


def _terminate_sessions_of(db: MigratedDatabase, role: str) -> None:
    with db.admin() as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
        )


def test_a_rotated_password_is_picked_up_after_one_rejection(
    secret_backed: MigratedDatabase, fetches: list[bool]
):
    db = secret_backed
    role = db.roles.readonly_a
    client = boto3.client("secretsmanager")
    old = secrets.token_urlsafe(18)
    db.set_password(role, old)
    client.create_secret(Name=SECRET, SecretString=_secret_value(db, old))
    # Given a warm pool that connected with the old password
    with readonly_session() as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role,)
    assert fetches == [False]

    # When the password rotates (database first, then AWSCURRENT) and the pooled
    # connection is gone, as after max_lifetime or a Lambda thaw
    new = secrets.token_urlsafe(18)
    db.set_password(role, new)
    client.put_secret_value(SecretId=SECRET, SecretString=_secret_value(db, new))
    _terminate_sessions_of(db, role)

    # Then the next session still succeeds, after exactly one forced refetch
    with readonly_session() as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role,)
    assert fetches == [False, True]


def test_a_password_still_wrong_after_the_refetch_fails_after_one_refetch(
    secret_backed: MigratedDatabase, fetches: list[bool]
):
    db = secret_backed
    db.set_password(db.roles.readonly_a, secrets.token_urlsafe(18))
    boto3.client("secretsmanager").create_secret(
        Name=SECRET, SecretString=_secret_value(db, "not-the-password")
    )
    source = SecretCredentials(SECRET, get_settings())

    # When one connection attempt is made with a secret the server rejects
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        with_credentials(source, lambda params: psycopg.connect(**params))
    # Then the secret was read once, refetched once, and nothing more
    assert fetches == [False, True]


def test_sessions_answer_unavailable_when_credentials_stay_wrong(
    secret_backed: MigratedDatabase, fetches: list[bool]
):
    db = secret_backed
    db.set_password(db.roles.readonly_a, secrets.token_urlsafe(18))
    boto3.client("secretsmanager").create_secret(
        Name=SECRET, SecretString=_secret_value(db, "not-the-password")
    )
    with pytest.raises(DatabaseUnavailable), readonly_session() as conn:
        conn.execute("SELECT 1")
    assert fetches[0] is False
    assert True in fetches


def test_outside_local_mode_tls_is_required(
    scram_db: MigratedDatabase, aws: str, monkeypatch: pytest.MonkeyPatch
):
    # Given the AWS mode (the default) and a server that offers no TLS
    monkeypatch.delenv("BABYSHIELD_ENV", raising=False)
    monkeypatch.setenv("DB_POOL_TIMEOUT_SECONDS", "1")
    get_settings.cache_clear()
    close_pools()
    password = secrets.token_urlsafe(18)
    scram_db.set_password(scram_db.roles.readonly_a, password)
    boto3.client("secretsmanager").create_secret(
        Name=SECRET, SecretString=_secret_value(scram_db, password)
    )
    source = SecretCredentials(SECRET, get_settings())
    try:
        # When a connection is attempted with the right password
        # Then it is refused: sslmode=verify-full will not fall back to plaintext
        with pytest.raises(psycopg.OperationalError, match="SSL"):
            with_credentials(source, lambda params: psycopg.connect(**params))
        with pytest.raises(DatabaseUnavailable), readonly_session() as conn:
            conn.execute("SELECT 1")
    finally:
        close_pools()
