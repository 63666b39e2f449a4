"""Secrets, IAM users and a driver on the moto server, for the rotation tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from functions.shared import names
from functions.shared.inventory import spec
from functions.shared.rotation.driver import LocalRotationDriver, seed_secret
from functions.shared.rotation.store import SecretStore
from ops.rotate import seed_partner_export_key

# The database fixtures, in their own module to keep this one about AWS.
from tests.integration.rotation.database_fixtures import (  # noqa: F401
    db_driver,
    db_secrets,
    rotation_db,
)
from tests.support.aws import create_webhook_nonce_table


@pytest.fixture
def store(aws: str) -> SecretStore:
    # A routine rotation of the webhook secret reads which version the sender last
    # signed with from here (functions/rotate_iam/generated.py).
    create_webhook_nonce_table()
    return SecretStore(caller="test")


@pytest.fixture
def driver(store: SecretStore) -> LocalRotationDriver:
    # No pauses between retries: the retry count is what the tests check, not the wait.
    return LocalRotationDriver(store=store, backoff_seconds=0.0, sleep=lambda _: None)


@dataclass
class PartnerUser:
    name: str
    first_key_id: str
    first_secret: str


@pytest.fixture
def partner_user(store: SecretStore) -> PartnerUser:
    """The partner-export IAM user with one active key, stored as AWSCURRENT."""
    import boto3

    iam = boto3.client("iam")
    iam.create_user(UserName=names.PARTNER_EXPORT_USER)
    key = seed_partner_export_key(store, iam)
    return PartnerUser(names.PARTNER_EXPORT_USER, key["AccessKeyId"], key["SecretAccessKey"])


@pytest.fixture
def webhook_secret(store: SecretStore) -> str:
    """The webhook signing secret with a first whsec_ value; returns that value."""
    from functions.shared.identity.webhooks import generate_webhook_secret_value

    value: dict[str, Any] = json.loads(generate_webhook_secret_value())
    value["kind"] = "generated"
    seed_secret(store, spec("webhook-signing-secret"), value)
    return str(value["secret"])


@pytest.fixture
def jwt_secret(store: SecretStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The JWT signing key with a first ES256 pair. Every verification re-reads the
    secret: what the tests check is the stages, not a cache."""
    from functions.shared.identity.jwt_keys import generate_jwt_secret_value

    monkeypatch.setenv("SECRET_CACHE_SECONDS", "0")
    seed_secret(store, spec("jwt-signing-key"), json.loads(generate_jwt_secret_value("ES256")))
