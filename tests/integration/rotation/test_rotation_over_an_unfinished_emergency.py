"""A rotation Secrets Manager starts over an emergency that stopped after its
promotion (its finishSecret could not retire the leaked login). AWS allows a new
rotation then: the emergency's version is AWSCURRENT, no other holds AWSPENDING.
Only the rotation function's gate stands between the schedule and the loss of the
emergency's retirement."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
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


def _step(store: Any, name: str, step: str, token: str) -> Any:
    """One step, delivered as Secrets Manager delivers it."""
    from functions.rotate_db.handler import lambda_handler

    arn = store.describe(spec(name).secret_name).arn
    event = {"Step": step, "SecretId": arn, "ClientRequestToken": token}
    return lambda_handler(event, DriverContext(function_name="rotate-rotate_db"))


def test_the_runbooks_commands_after_a_rotation_started_over_an_emergency_keep_it(
    db_secrets: DatabaseSecrets,
) -> None:
    """An emergency whose finishSecret met the database down after promoting is left
    AWSCURRENT + AWSPENDING, tagged. Secrets Manager may start its next rotation over it
    (the gate's own docstring says so): it creates the new version S labelled AWSPENDING
    before calling createSecret, which moves the label off the emergency's version, and
    the gate then refuses every step of S. From there `unfinished_rotation()` names S,
    not the emergency: `babyshield rotate db-app --resume` against AWS refuses ("never
    promoted ... --cancel, then rotate"), and `--cancel`, which it advises, drops S *and
    the emergency tag*. The emergency is then reported finished, the leaked login still
    logs in (its session keeps running), and the next rotation runs as a routine one.
    """
    from functions.rotate_db.handler import lambda_handler
    from functions.shared.rotation.protocol import RotationInProgress
    from ops.console import CommandError
    from ops.rotate import finish_via_function
    from tests.integration.rotation.database_fixtures import database_down_for_finish

    name = spec("db-app").secret_name
    leaked = db_secrets.current("db-app")
    with pytest.raises(Exception):  # noqa: B017, PT011 - RotationFailed in finishSecret
        database_down_for_finish(db_secrets).rotate("db-app", emergency=True)
    db_secrets.proxy.up()
    emergency = db_secrets.store.describe(name).unfinished_rotation()
    assert emergency is not None
    assert db_secrets.logs_in(leaked)

    # Secrets Manager starts its next rotation: version S, AWSPENDING, then createSecret.
    # (AWS creates S without a value; moto needs one. No step below reads it.)
    scheduled = str(uuid.uuid4())
    db_secrets.store.client.put_secret_value(
        SecretId=name,
        ClientRequestToken=scheduled,
        SecretString="{}",
        VersionStages=["AWSPENDING"],
    )
    with pytest.raises(RotationInProgress):
        _step(db_secrets.store, "db-app", "createSecret", scheduled)

    # On-call follows the commands: --resume (against AWS), and what it advises.
    def deployed(function: str, event: dict[str, Any]) -> dict[str, Any]:
        try:
            lambda_handler(event, DriverContext(function_name=function))
        except Exception as exc:  # noqa: BLE001 - Lambda reports any error in its payload
            return {"errorType": type(exc).__name__}
        return {}

    advice = ""
    try:
        finish_via_function(db_secrets.store, spec("db-app"), deployed)
    except CommandError as refused:
        advice = str(refused.hint)
    if "--cancel" in advice:
        LocalRotationDriver(store=db_secrets.store).cancel("db-app")  # `--cancel`

    finished = not db_secrets.logs_in(leaked)
    still_reported = db_secrets.store.describe(name).unfinished_rotation() == emergency
    assert finished or still_reported, (
        "the emergency's retirement was dropped: the leaked login still logs in and "
        "nothing reports the emergency unfinished"
    )


def test_resume_against_aws_of_an_emergency_never_promoted_keeps_it_an_emergency(
    db_secrets: DatabaseSecrets,
) -> None:
    """An emergency whose testSecret keeps failing (here: the database down) is left
    AWSPENDING with its tag. RUNBOOK step 2 says `--resume` for it ("--resume keeps it
    an emergency"); against AWS that is refused for a version never promoted, with the
    hint `babyshield rotate db-app --cancel, then babyshield rotate db-app`: a routine
    rotation, which leaves the leaked login (AWSPREVIOUS afterwards) logging in and its
    sessions running. Every other command suggested after a failed emergency keeps
    --emergency; this one must too."""
    from functions.rotate_db.handler import lambda_handler
    from functions.shared.rotation.driver import RotationFailed
    from ops.console import CommandError
    from ops.rotate import finish_via_function

    def database_down_for_test(event: Mapping[str, Any], context: Any) -> Any:
        if event["Step"] == "testSecret":
            db_secrets.proxy.down()
        return lambda_handler(event, context)

    stuck = LocalRotationDriver(
        store=db_secrets.store, handler=database_down_for_test, backoff_seconds=0.0
    )
    with pytest.raises(RotationFailed) as failed:
        stuck.rotate("db-app", emergency=True)
    db_secrets.proxy.up()
    assert failed.value.left_pending
    tags = db_secrets.store.describe(spec("db-app").secret_name).tags
    assert tags.get("babyshield:emergency-rotation") == failed.value.token

    def never(function: str, event: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("a version never promoted is not finished by the function")

    with pytest.raises(CommandError) as refused:
        finish_via_function(db_secrets.store, spec("db-app"), never)
    hint = str(refused.value.hint)
    assert "--cancel" in hint
    assert "babyshield rotate db-app --emergency" in hint, hint
