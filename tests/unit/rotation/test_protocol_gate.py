"""The gate before every rotation step (pure: decided from the secret's metadata)."""

from __future__ import annotations

import pytest

from functions.shared.rotation.protocol import (
    NotAVersion,
    NotPending,
    RotationError,
    RotationInProgress,
    RotationNotEnabled,
    RotationRequest,
    gate,
)
from functions.shared.rotation.store import SecretMetadata


def _metadata(stages: dict[str, tuple[str, ...]], *, enabled: bool = True) -> SecretMetadata:
    return SecretMetadata(
        arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:babyshield/db-app-AbCdEf",
        name="babyshield/db-app",
        rotation_enabled=enabled,
        stages=stages,
        tags={},
    )


def _request(step: str, token: str = "new") -> RotationRequest:  # noqa: S107 - a version id
    return RotationRequest.from_event(
        {"Step": step, "SecretId": "babyshield/db-app", "ClientRequestToken": token}
    )


def test_rotation_must_be_enabled() -> None:
    """A secret whose rotation was switched off is never changed by a stray event."""
    with pytest.raises(RotationNotEnabled):
        gate(_request("setSecret"), _metadata({"new": ("AWSPENDING",)}, enabled=False))


def test_a_token_already_current_means_there_is_nothing_to_do() -> None:
    """A retried step after finishSecret succeeded must not rotate again."""
    assert gate(_request("setSecret"), _metadata({"new": ("AWSCURRENT",)})) == "done"


def test_a_token_that_is_neither_current_nor_pending_is_refused() -> None:
    """An old version must never be made current again through a replayed event."""
    with pytest.raises(NotPending):
        gate(_request("finishSecret", "old"), _metadata({"old": ("AWSPREVIOUS",)}))


def test_only_create_secret_may_meet_a_token_that_is_not_a_version_yet() -> None:
    """The local driver lets createSecret create the version; later steps need it."""
    metadata = _metadata({"cur": ("AWSCURRENT",)})
    assert gate(_request("createSecret"), metadata) == "run"
    for step in ("setSecret", "testSecret", "finishSecret"):
        with pytest.raises(NotAVersion):
            gate(_request(step), metadata)


def test_a_new_rotation_cannot_start_while_another_version_is_pending() -> None:
    """Two rotations at once would each promote a value the other never tested."""
    metadata = _metadata({"cur": ("AWSCURRENT",), "other": ("AWSPENDING",)})
    with pytest.raises(RotationInProgress):
        gate(_request("createSecret"), metadata)


def test_the_pending_token_runs() -> None:
    metadata = _metadata({"cur": ("AWSCURRENT",), "new": ("AWSPENDING",)})
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        assert gate(_request(step), metadata) == "run"


@pytest.mark.parametrize(
    "event",
    [
        {"Step": "dropSecret", "SecretId": "s", "ClientRequestToken": "t"},
        {"Step": "setSecret", "ClientRequestToken": "t"},
        {"Step": "setSecret", "SecretId": "s", "ClientRequestToken": ""},
    ],
)
def test_malformed_events_are_refused(event: dict[str, str]) -> None:
    """Only the four steps, with a secret and a token, are ever acted on."""
    with pytest.raises(RotationError):
        RotationRequest.from_event(event)
