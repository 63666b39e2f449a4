"""The rotation protocol under retried, replayed and racing steps, and lost answers
between a database change and a secret write.

Every test drives the real rotation handlers (functions.<method>.handler.lambda_handler)
against moto over HTTP and, for the database, the scram-sha-256 PostgreSQL cluster of
the rotation fixtures.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Mapping
from typing import Any

import boto3
import pytest

from functions.shared.inventory import spec
from functions.shared.rotation.driver import DriverContext, LocalRotationDriver
from functions.shared.rotation.store import SecretStore
from tests.integration.rotation.conftest import PartnerUser
from tests.integration.rotation.database_fixtures import DatabaseSecrets
from tests.integration.rotation.state import current_value, stages


def _handler(method: str) -> Any:
    import importlib

    return importlib.import_module(f"functions.{method}.handler").lambda_handler


def _step(store: SecretStore, name: str, step: str, token: str) -> Any:
    """One step, delivered as Secrets Manager (or an operator's invoke) delivers it."""
    item = spec(name)
    arn = store.describe(item.secret_name).arn
    event = {"Step": step, "SecretId": arn, "ClientRequestToken": token}
    return _handler(item.method)(event, DriverContext(function_name=f"rotate-{item.method}"))


def _tier_logins_that_work(db_secrets: DatabaseSecrets, name: str) -> list[str]:
    """Which of the tier's stored values (AWSCURRENT, AWSPREVIOUS) the database accepts."""
    working = []
    for stage in ("AWSCURRENT", "AWSPREVIOUS"):
        found = db_secrets.store.read(spec(name).secret_name, stage=stage)
        if found is not None and db_secrets.logs_in(found.value):
            working.append(stage)
    return working


# --- every step delivered twice (Secrets Manager retries a step that succeeded) ---


@pytest.mark.parametrize("emergency", [False, True], ids=["routine", "emergency"])
@pytest.mark.parametrize("name", ["db-app", "db-admin"])
def test_every_database_step_delivered_twice_leaves_secret_and_database_agreeing(
    name: str, emergency: bool, db_secrets: DatabaseSecrets
) -> None:
    """Each step runs twice in a row with one token, as a retry after a lost
    answer would: one pending value, the secret and the database agree after every
    delivery (the admin outside its documented set-to-finish window), and the previous
    value is retired only in an emergency."""
    secret_id = spec(name).secret_name
    before = db_secrets.current(name)
    token = str(uuid.uuid4())
    if emergency:
        db_secrets.store.mark_emergency(secret_id, token)
    pending_values = []
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        for _ in range(2):
            _step(db_secrets.store, name, step, token)
            # The admin's one documented window: from its setSecret to its finishSecret
            # the database holds the pending password (docs/ROTATION.md).
            if name != "db-admin" or step in ("createSecret", "finishSecret"):
                assert db_secrets.agree(name), f"disagree after {step}"
            if step == "createSecret":
                found = db_secrets.store.read(secret_id, version_id=token)
                assert found is not None
                pending_values.append(found.value["password"])
    assert pending_values[0] == pending_values[1]
    assert db_secrets.current(name)["password"] == pending_values[0]
    assert stages(db_secrets.store, name)[token] == ("AWSCURRENT",)
    if name != "db-admin":
        assert db_secrets.logs_in(before) is not emergency


def test_iam_and_jwt_steps_delivered_twice_make_one_key(
    store: SecretStore, partner_user: PartnerUser
) -> None:
    """createSecret delivered again after it stored its key creates no second IAM
    key (the two-key limit) and every later step is a no-op the second time."""
    import json

    from functions.shared.identity.jwt_keys import generate_jwt_secret_value
    from functions.shared.rotation.driver import seed_secret

    seed_secret(store, spec("jwt-signing-key"), json.loads(generate_jwt_secret_value()))
    for name in ("iam-partner-export", "jwt-signing-key"):
        token = str(uuid.uuid4())
        store.mark_emergency(spec(name).secret_name, token)  # JWT: past the overlap guard
        for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
            for _ in range(2):
                _step(store, name, step, token)
        assert stages(store, name)[token] == ("AWSCURRENT",)
    keys = boto3.client("iam").list_access_keys(UserName=partner_user.name)["AccessKeyMetadata"]
    assert {key["AccessKeyId"]: key["Status"] for key in keys} == {
        partner_user.first_key_id: "Inactive",
        current_value(store, "iam-partner-export")["AccessKeyId"]: "Active",
    }


# --- events for a token that is not AWSPENDING change nothing --------------------


def test_stale_events_of_an_earlier_rotation_are_refused_and_change_nothing(
    db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver
) -> None:
    """After two rotations, every step of the first one delivered again (its
    token is AWSPREVIOUS now), and of a token that was never a version, is refused or
    a no-op: the labels and the database stay as they are."""
    first = db_driver.rotate("db-readonly").version_id
    second = db_driver.rotate("db-readonly").version_id
    before = stages(db_secrets.store, "db-readonly")
    assert before[first] == ("AWSPREVIOUS",)
    for token in (first, str(uuid.uuid4())):
        for step in ("setSecret", "testSecret", "finishSecret", "createSecret"):
            with contextlib.suppress(Exception):
                _step(db_secrets.store, "db-readonly", step, token)
            if step != "createSecret":
                assert stages(db_secrets.store, "db-readonly") == before, (token, step)
            assert db_secrets.agree("db-readonly")
    assert stages(db_secrets.store, "db-readonly")[second] == ("AWSCURRENT",)


# --- a write whose answer is lost after the database changed ---------------------

_WRITES = {
    "store pending": ("PutSecretValue", b"AWSPENDING"),
    "promote": ("UpdateSecretVersionStage", b"MoveToVersionId"),
    "date promotion": ("TagResource", b"babyshield:promoted"),
    "drop previous": ("UpdateSecretVersionStage", b'"AWSPREVIOUS"'),
    "untag emergency": ("UntagResource", b"babyshield:emergency-rotation"),
    "drop pending": ("UpdateSecretVersionStage", b'"VersionStage": "AWSPENDING"'),
}


@pytest.mark.parametrize("write", sorted(_WRITES))
@pytest.mark.parametrize("name", ["db-app", "db-admin"])
def test_an_emergency_whose_secret_write_answer_is_lost_finishes_consistent(
    name: str, write: str, db_secrets: DatabaseSecrets, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each Secrets Manager write of an emergency is applied but its answer lost
    (botocore retries it, the driver retries the step): the rotation still finishes,
    the secret and the database agree, and the leaked value is refused."""
    from tests.support.aws_faults import DROP_ANSWER, faulty_aws_endpoint, first_only

    leaked = db_secrets.current(name)
    action, marker = _WRITES[write]
    with faulty_aws_endpoint(monkeypatch) as faults:
        faults.rule = first_only(
            lambda target, body: (
                target.endswith(f".{action}") and marker in body.replace(b'":"', b'": "')
            ),
            DROP_ANSWER,
        )
        LocalRotationDriver(store=SecretStore(caller="test"), backoff_seconds=0.0).rotate(
            name, emergency=True
        )
        assert faults.disturbed(DROP_ANSWER), "the fault never fired"
        assert db_secrets.agree(name)
        assert not db_secrets.logs_in(leaked)
        metadata = db_secrets.store.describe(spec(name).secret_name)
        assert metadata.unfinished_rotation() is None
        assert "babyshield:emergency-rotation" not in metadata.tags


def test_an_iam_key_whose_creation_answer_is_lost_leaves_no_usable_orphan(
    store: SecretStore, partner_user: PartnerUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CreateAccessKey applied, its answer lost: botocore's retry meets the two-key
    limit, the step's retry deletes the key nobody stored, and the user ends with the
    previous key (still active: its overlap window runs) and the current one, nothing
    else."""
    from tests.support.aws_faults import DROP_ANSWER, faulty_aws_endpoint, first_only

    with faulty_aws_endpoint(monkeypatch) as faults:
        faults.rule = first_only(
            lambda target, body: b"Action=CreateAccessKey" in body, DROP_ANSWER
        )
        LocalRotationDriver(store=SecretStore(caller="test"), backoff_seconds=0.0).rotate(
            "iam-partner-export"
        )
        assert faults.disturbed(DROP_ANSWER)
        iam = boto3.client("iam")
        keys = iam.list_access_keys(UserName=partner_user.name)["AccessKeyMetadata"]
        assert {key["AccessKeyId"]: key["Status"] for key in keys} == {
            partner_user.first_key_id: "Active",
            current_value(store, "iam-partner-export")["AccessKeyId"]: "Active",
        }


# --- two rotations of one tier racing --------------------------------------------


def test_two_rotations_of_one_tier_racing_leave_secret_and_database_agreeing(
    db_secrets: DatabaseSecrets,
) -> None:
    """Two drivers rotate db-app at once with their own tokens (no lock between
    them, as two overlapping invocations would): whatever each reports, the secret and
    the database agree afterwards and no version is left half-promoted."""
    from functions.rotate_db.handler import lambda_handler

    def together(barrier: threading.Barrier) -> Any:
        def handler(event: Mapping[str, Any], context: Any) -> Any:
            if event["Step"] == "createSecret":
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.wait(timeout=5)
            return lambda_handler(event, context)

        return handler

    def run(barrier: threading.Barrier, outcomes: list[object]) -> None:
        driver = LocalRotationDriver(
            store=SecretStore(caller="test"), handler=together(barrier), backoff_seconds=0.0
        )
        try:
            outcomes.append(driver.rotate("db-app"))
        except Exception as exc:  # noqa: BLE001 - a refusal is a correct answer
            outcomes.append(exc)

    for _ in range(3):
        barrier = threading.Barrier(2)
        outcomes: list[object] = []
        threads = [threading.Thread(target=run, args=(barrier, outcomes)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert len(outcomes) == 2
        assert db_secrets.agree("db-app"), outcomes
        metadata = db_secrets.store.describe(spec("db-app").secret_name)
        assert sum("AWSCURRENT" in labels for labels in metadata.stages.values()) == 1
        left = metadata.unfinished_rotation()
        if left is not None:
            LocalRotationDriver(store=db_secrets.store, backoff_seconds=0.0).cancel("db-app")
