"""When AWSCURRENT's value took over, which the JWT guard and IAM's grace window count
from: its promotion when finishSecret dated one, else its creation."""

from __future__ import annotations

import pytest

from functions.shared.rotation.store import PROMOTED_TAG, SecretMetadata


def _metadata(tags: dict[str, str], created: dict[str, float]) -> SecretMetadata:
    return SecretMetadata(
        arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:babyshield/jwt-AbCdEf",
        name="babyshield/jwt-signing-key",
        rotation_enabled=True,
        stages={"new": ("AWSCURRENT",), "old": ("AWSPREVIOUS",)},
        tags=tags,
        created=created,
    )


def test_a_rotation_resumed_later_counts_from_its_promotion() -> None:
    metadata = _metadata({PROMOTED_TAG: "new@5000"}, {"new": 1000.0})
    assert metadata.current_since() == 5000.0


def test_a_promotion_tag_of_another_version_is_not_this_ones() -> None:
    # The tag of the previous rotation, left when this version was promoted untagged.
    metadata = _metadata({PROMOTED_TAG: "old@9000"}, {"new": 1000.0})
    assert metadata.current_since() == 1000.0


def test_a_tag_that_does_not_parse_falls_back_to_the_creation() -> None:
    metadata = _metadata({PROMOTED_TAG: "new@yesterday"}, {"new": 1000.0})
    assert metadata.current_since() == 1000.0


@pytest.mark.parametrize("at", ["inf", "-inf", "nan", "1e400", "-5"])
def test_a_tag_that_is_no_time_falls_back_to_the_creation(at: str) -> None:
    """A hand-edited tag ("new@inf") is no date: the JWT guard's arithmetic on it
    raised OverflowError where a refusal belonged."""
    metadata = _metadata({PROMOTED_TAG: f"new@{at}"}, {"new": 1000.0})
    assert metadata.current_since() == 1000.0


def test_nothing_known_is_none() -> None:
    assert _metadata({}, {}).current_since() is None
