"""rotate_db against a PostgreSQL that lets any password in (trust authentication).

A developer's server often trusts local connections. A login there proves
nothing about the stored password, so a rotation that took a successful login
for "already set" would store a password the database never received, and the
first server that checks (RDS, a restored snapshot) would refuse the secret.
What the database stores is read here from pg_authid and checked against the
secret's password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator

import pytest

from functions.shared.rotation.driver import LocalRotationDriver
from functions.shared.rotation.store import SecretStore
from tests.integration.rotation.database_fixtures import DatabaseSecrets, database_secrets
from tests.support.postgres import MigratedDatabase, private_database


@pytest.fixture(scope="module")
def trust_db(trust_cluster: str) -> Iterator[MigratedDatabase]:
    with private_database(trust_cluster) as database:
        yield database


@pytest.fixture
def trust_secrets(
    trust_db: MigratedDatabase, store: SecretStore, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DatabaseSecrets]:
    with database_secrets(trust_db, store, monkeypatch) as found:
        yield found


def stored_password_is(database: MigratedDatabase, role: str, password: str) -> bool:
    """Whether the role's SCRAM-SHA-256 verifier (RFC 5802) was made from `password`."""
    with database.admin() as conn:
        row = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)
        ).fetchone()
    if row is None or not row[0]:
        return False
    # SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
    _, parameters, keys = str(row[0]).split("$")
    iterations, salt = parameters.split(":")
    server_key = keys.split(":")[1]
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(salt), int(iterations)
    )
    expected = base64.b64encode(hmac.new(salted, b"Server Key", "sha256").digest()).decode()
    return hmac.compare_digest(expected, server_key)


@pytest.mark.parametrize("name", ["db-readonly", "db-app", "db-admin"])
def test_rotation_stores_the_new_password_even_where_any_password_logs_in(
    name: str, trust_secrets: DatabaseSecrets
) -> None:
    driver = LocalRotationDriver(store=trust_secrets.store, backoff_seconds=0.0)
    database = trust_secrets.database
    # Given a server where a wrong password logs in as well
    # pragma: allowlist nextline secret
    assert trust_secrets.logs_in({**trust_secrets.current(name), "password": "wrong"})
    # When the secret rotates (twice: the alternating tiers come back to their first login)
    for _ in range(2):
        driver.rotate(name)
        # Then the database stores exactly the password AWSCURRENT holds
        current = trust_secrets.current(name)
        assert stored_password_is(database, current["username"], current["password"])
