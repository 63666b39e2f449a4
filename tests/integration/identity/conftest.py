"""The API against real PostgreSQL (migrated, RLS on) and the moto server, with the
real identity layer: the test-only caller headers are switched off."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from functions.shared.identity.api_keys import generate_api_key
from functions.shared.identity.passwords import hash_password
from functions.shared.identity.tokens import issue_access_token
from tests.support.identity import create_jwt_secret, create_webhook_secret, identity_env
from tests.support.postgres import MigratedDatabase

__all__ = ["identity_env"]

ADMIN_IP = "192.0.2.10"


@dataclass
class IdentityWorld:
    db: MigratedDatabase
    webhook_secret: str

    def create_user(self, email: str, password: str = "pw", role: str = "user") -> uuid.UUID:  # noqa: S107
        with self.db.admin() as conn:
            row = conn.execute(
                "INSERT INTO users (email, password_hash, role) VALUES (%s, %s, %s) RETURNING id",
                (email.lower(), hash_password(password), role),
            ).fetchone()
        assert row is not None
        return row[0]  # type: ignore[return-value]

    def create_key(
        self,
        owner_id: uuid.UUID,
        scopes: tuple[str, ...] = ("recalls:read",),
        limit: int = 60,
        expires_at: datetime | None = None,
    ) -> str:
        new_key = generate_api_key()
        with self.db.admin() as conn:
            conn.execute(
                "INSERT INTO api_keys (key_id, owner_id, secret_hash, scopes, "
                "rate_limit_per_minute, expires_at) VALUES (%s, %s, %s, %s, %s, %s)",
                (new_key.key_id, owner_id, new_key.secret_hash, list(scopes), limit, expires_at),
            )
        return new_key.plaintext

    def token(self, user_id: uuid.UUID, role: str = "user") -> str:
        return issue_access_token(user_id, role).token

    def admin_headers(self, admin_id: uuid.UUID) -> dict[str, str]:
        """An admin's two credentials: an admin-scoped key and an admin token."""
        return {
            "X-API-Key": self.create_key(admin_id, scopes=("admin", "recalls:read")),
            "Authorization": f"Bearer {self.token(admin_id, 'admin')}",
        }

    def query(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.db.admin() as conn:
            return list(conn.execute(statement, params).fetchall())

    def execute(self, statement: str, params: tuple[Any, ...] = ()) -> None:
        with self.db.admin() as conn:
            conn.execute(statement, params)

    def recall_count(self) -> int:
        return int(self.query("SELECT count(*) FROM recalls")[0][0])

    def audit_rows(self) -> list[tuple[Any, ...]]:
        return self.query(
            "SELECT actor, action, outcome, host(source_ip), detail FROM audit_log ORDER BY id"
        )


@pytest.fixture
def world(identity_env, api_db, monkeypatch) -> IdentityWorld:
    from functions.shared.settings import get_settings

    monkeypatch.setenv("TEST_CALLER_IDENTITY", "0")
    monkeypatch.setenv("ADMIN_ALLOWED_CIDRS", "192.0.2.0/24")
    get_settings.cache_clear()
    create_jwt_secret()
    return IdentityWorld(api_db, create_webhook_secret())
