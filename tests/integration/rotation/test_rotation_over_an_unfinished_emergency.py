"""A rotation Secrets Manager starts over an emergency that stopped after its
promotion (its finishSecret could not retire the leaked login). AWS allows a new
rotation then: the emergency's version is AWSCURRENT, no other holds AWSPENDING.
Only the rotation function's gate stands between the schedule and the loss of the
emergency's retirement."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from functions.shared.inventory import spec
from functions.shared.rotation.driver import DriverContext, LocalRotationDriver, RotationFailed
from functions.shared.rotation.protocol import STEPS, RotationError, RotationInProgress
from tests.integration.rotation.database_fixtures import DatabaseSecrets, database_down_for_finish


def _alive(conn: psycopg.Connection[tuple[Any, ...]]) -> bool:
    """Whether a session still runs statements (an ended one raises)."""
    try:
        conn.execute("SELECT 1").fetchone()
    except psycopg.Error:
        return False
    return True


def test_a_scheduled_rotation_over_an_unfinished_emergency_is_refused_until_it_is_resumed(
    db_secrets: DatabaseSecrets,
) -> None:
    """Before, the new rotation went through as a routine one: it re-armed the leaked
    login without fencing it off (the session opened with the leaked value stayed
    connected), and afterwards nothing reported the emergency as unfinished, so
    `--resume` found nothing to finish."""
    from functions.rotate_db.handler import lambda_handler

    name = spec("db-app").secret_name
    leaked = db_secrets.current("db-app")
    attacker = db_secrets.session_as(leaked)  # directly to the server, not via the proxy
    try:
        # Given an emergency whose finishSecret met the database down, after promoting
        with pytest.raises(RotationFailed) as failed:
            database_down_for_finish(db_secrets).rotate("db-app", emergency=True)
        db_secrets.proxy.up()
        assert failed.value.step == "finishSecret"
        emergency_token = failed.value.token
        assert _alive(attacker)

        # When Secrets Manager starts its next rotation, with a token of its own
        token = str(uuid.uuid4())
        arn = db_secrets.store.describe(name).arn
        refused: RotationError | None = None
        for step in STEPS:
            event = {"Step": step, "SecretId": arn, "ClientRequestToken": token}
            try:
                lambda_handler(event, DriverContext(function_name="rotate_db"))
            except RotationError as exc:
                refused = exc
                break

        # Then its first step is refused, saying what finishes the emergency
        assert isinstance(refused, RotationInProgress)
        assert "`babyshield rotate db-app --resume`" in str(refused)
        assert db_secrets.store.describe(name).unfinished_rotation() == emergency_token
        # and resuming it does what was left: the leaked login's session is ended
        LocalRotationDriver(store=db_secrets.store, backoff_seconds=0.0).rotate(
            "db-app", resume=True
        )
        assert not _alive(attacker)
        assert db_secrets.store.describe(name).unfinished_rotation() is None
        assert db_secrets.agree("db-app")
    finally:
        attacker.close()
