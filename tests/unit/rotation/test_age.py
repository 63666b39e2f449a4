"""Secret age: last rotation, next due date and overdue, from the AWSCURRENT version."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from functions.shared.inventory import spec
from functions.shared.rotation.age import secret_age
from functions.shared.rotation.store import SecretMetadata

MADE = datetime(2026, 1, 1, tzinfo=UTC)


class _Store:
    """Answers describe() only: the age logic under test reads nothing else."""

    def __init__(self, metadata: SecretMetadata):
        self.metadata = metadata

    def describe(self, secret_id: str) -> SecretMetadata:
        return self.metadata


def _store() -> _Store:
    return _Store(
        SecretMetadata(
            arn="arn",
            name="babyshield/jwt-signing-key",
            rotation_enabled=True,
            stages={"old": ("AWSPREVIOUS",), "cur": ("AWSCURRENT",)},
            tags={},
            created={"old": (MADE - timedelta(days=40)).timestamp(), "cur": MADE.timestamp()},
        )
    )


def test_age_counts_from_the_current_version_not_the_oldest() -> None:
    age = secret_age(_store(), spec("jwt-signing-key"), MADE + timedelta(days=10))  # type: ignore[arg-type]
    assert age.last_rotated == MADE
    assert age.age_days == 10.0
    assert age.next_due == MADE + timedelta(days=30)
    assert not age.overdue


def test_a_secret_past_its_period_is_overdue() -> None:
    age = secret_age(_store(), spec("jwt-signing-key"), MADE + timedelta(days=31))  # type: ignore[arg-type]
    assert age.overdue
    assert age.as_json()["next_due"] == "2026-01-31T00:00:00+00:00"
