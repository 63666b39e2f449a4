"""The secret inventory: every secret the platform holds, its kind and rotation.

One table read by the CDK stack (rotation schedules), the `babyshield secrets`
report and the secret-age metric, so the three can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from functions.shared.names import secret_name

SecretKind = Literal["database", "jwt-signing-key", "iam-access-key", "generated"]
RotationMethod = Literal["rotate_db", "rotate_jwt", "rotate_iam"]


@dataclass(frozen=True)
class SecretSpec:
    """One secret: `name` is the inventory name, `method` the rotation package."""

    name: str
    kind: SecretKind
    period_days: int
    method: RotationMethod
    description: str
    # How long the previous value stays usable after a rotation (IAM: the old key stays
    # active, then the daily sweep deactivates it and the next rotation may delete it;
    # JWT/webhook: AWSPREVIOUS is accepted anyway until the next rotation replaces it).
    # An emergency rotation skips this window.
    overlap_days: int = 7

    @property
    def secret_name(self) -> str:
        """The Secrets Manager name, e.g. `babyshield/db-app`."""
        return secret_name(self.name)


INVENTORY: tuple[SecretSpec, ...] = (
    SecretSpec(
        "db-readonly",
        "database",
        90,
        "rotate_db",
        "PostgreSQL read-only user (SELECT on the public tables)",
    ),
    SecretSpec(
        "db-app",
        "database",
        90,
        "rotate_db",
        "PostgreSQL application user (reads and writes, no DDL)",
    ),
    SecretSpec(
        "db-admin",
        "database",
        90,
        "rotate_db",
        "PostgreSQL admin user (migrations, rotates the other two users)",
    ),
    SecretSpec(
        "jwt-signing-key",
        "jwt-signing-key",
        30,
        "rotate_jwt",
        "Key pair that signs API access tokens",
    ),
    SecretSpec(
        "iam-partner-export",
        "iam-access-key",
        60,
        "rotate_iam",
        "Access key of the IAM user that partners' recall exports use",
    ),
    SecretSpec(
        "webhook-signing-secret",
        "generated",
        90,
        "rotate_iam",
        "Shared secret that signs outgoing webhooks (generated-secret mode)",
    ),
)

# Partner API keys live in the database (api_keys), one per partner, rotated through the
# admin API with an overlap window; they are not Secrets Manager secrets, so they stay
# out of INVENTORY (which CDK turns into secrets) and are reported from the table.
API_KEY_PERIOD_DAYS = 90

_BY_NAME = {item.name: item for item in INVENTORY}


def spec_for_secret_name(secret_name: str) -> SecretSpec | None:
    """The entry whose Secrets Manager name is `secret_name` (None: not ours)."""
    for item in INVENTORY:
        if item.secret_name == secret_name:
            return item
    return None


def spec(name: str) -> SecretSpec:
    """The inventory entry for `name`; a KeyError names the known secrets."""
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(sorted(_BY_NAME))
        raise KeyError(f"unknown secret {name!r}; known: {known}") from None
