"""Database credentials: parsing the rotation secret, TLS outside local mode, and which
source each tier reads (no database needed)."""

from __future__ import annotations

import json

import psycopg
import pytest

from functions.shared.db.credentials import (
    CredentialError,
    DbCredentials,
    SecretCredentials,
    UrlCredentials,
    connection_parameters,
    is_authentication_failure,
    source_for,
)
from functions.shared.settings import settings_from_environment

SECRET = {
    "engine": "postgres",
    "host": "db.internal",
    "port": 5432,
    "dbname": "babyshield",
    "username": "babyshield_readonly_a",
    "password": "s3cr3t-value",
}


def test_a_rotation_secret_parses_and_never_shows_its_password():
    credentials = DbCredentials.from_secret(json.dumps(SECRET))
    assert credentials.username == "babyshield_readonly_a"
    assert "s3cr3t-value" not in repr(credentials)


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        json.dumps({**SECRET, "password": ""}),
        json.dumps({k: v for k, v in SECRET.items() if k != "host"}),
        json.dumps({**SECRET, "port": "five"}),
    ],
)
def test_an_unusable_secret_is_a_credential_error_without_its_value(raw: str):
    with pytest.raises(CredentialError) as caught:
        DbCredentials.from_secret(raw)
    assert "s3cr3t-value" not in str(caught.value)


def test_outside_local_mode_the_server_certificate_and_name_are_verified():
    settings = settings_from_environment({"DB_SSL_ROOT_CERT": "/opt/rds/global-bundle.pem"})
    parameters = connection_parameters(DbCredentials.from_secret(json.dumps(SECRET)), settings)
    assert parameters["sslmode"] == "verify-full"
    assert parameters["sslrootcert"] == "/opt/rds/global-bundle.pem"


def test_local_mode_does_not_demand_tls():
    settings = settings_from_environment({"BABYSHIELD_ENV": "local"})
    parameters = connection_parameters(DbCredentials.from_secret(json.dumps(SECRET)), settings)
    assert "sslmode" not in parameters


def test_url_overrides_are_honoured_in_local_mode_only():
    url = "postgresql://reader@127.0.0.1:5432/app"
    local = settings_from_environment({"BABYSHIELD_ENV": "local", "DATABASE_READONLY_URL": url})
    deployed = settings_from_environment({"DATABASE_READONLY_URL": url})
    assert isinstance(source_for("readonly", local), UrlCredentials)
    aws_source = source_for("readonly", deployed)
    assert isinstance(aws_source, SecretCredentials)
    assert aws_source.secret_id == "babyshield/db-readonly"


def test_each_tier_reads_its_own_secret():
    settings = settings_from_environment({"DB_APP_SECRET_ID": "arn:aws:secretsmanager:x:y:z"})
    app = source_for("app", settings)
    admin = source_for("admin", settings)
    assert isinstance(app, SecretCredentials)
    assert isinstance(admin, SecretCredentials)
    assert (app.secret_id, admin.secret_id) == (
        "arn:aws:secretsmanager:x:y:z",
        "babyshield/db-admin",
    )


def test_refresh_reports_whether_the_secret_changed():
    values = iter(
        [json.dumps(SECRET), json.dumps(SECRET), json.dumps({**SECRET, "password": "new"})]
    )
    reads: list[bool] = []

    def fetch(secret_id: str, force: bool) -> str:
        reads.append(force)
        return next(values)

    source = SecretCredentials("id", settings_from_environment({}), fetch=fetch)
    assert source.current()["password"] == "s3cr3t-value"
    assert source.current()["password"] == "s3cr3t-value"  # cached
    assert source.refresh() is False
    assert source.refresh() is True
    assert source.current()["password"] == "new"
    assert reads == [False, True, True]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ('FATAL:  password authentication failed for user "x"', True),
        ("FATAL:  SCRAM authentication requires libpq version 10 or above", True),
        ("connection refused", False),
        ('FATAL:  too many connections for role "x"', False),
    ],
)
def test_only_authentication_failures_trigger_a_refetch(message: str, expected: bool):
    assert is_authentication_failure(psycopg.OperationalError(message)) is expected
