"""IAM access-key rotation through the real rotate_iam handler, against moto's IAM and STS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import Stubber

from functions.rotate_iam.access_keys import AccessKeyRotator, KeyLimitReached
from functions.rotate_iam.rotators import ByKindRotator
from functions.shared.inventory import spec
from functions.shared.rotation.driver import LocalRotationDriver, RotationFailed
from functions.shared.rotation.protocol import run_step
from functions.shared.rotation.store import SecretStore
from tests.integration.rotation.conftest import PartnerUser
from tests.integration.rotation.state import current_value, stages

NAME = "iam-partner-export"


def _keys(user: str) -> dict[str, str]:
    listed = boto3.client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"]
    return {key["AccessKeyId"]: key["Status"] for key in listed}


def _driver_with(store: SecretStore, rotator: AccessKeyRotator) -> LocalRotationDriver:
    by_kind = ByKindRotator({"iam-access-key": rotator})
    return LocalRotationDriver(
        store=store,
        handler=lambda event, context: run_step(event, by_kind, "rotate_iam", store),
        backoff_seconds=0.0,
    )


def _days_later(days: int):
    return lambda: datetime.now(UTC) + timedelta(days=days)


def test_rotation_stores_a_working_new_key_and_keeps_the_old_one_active(
    driver: LocalRotationDriver, store: SecretStore, partner_user: PartnerUser
) -> None:
    """Protects the basic promise: a new key that works is current, and the old one
    still works through its overlap window (the daily sweep deactivates it after)."""
    # Given the partner-export user with one key, stored as AWSCURRENT
    # When the secret rotates
    result = driver.rotate(NAME)
    # Then AWSCURRENT holds a new key that STS recognises as the user
    value = current_value(store, NAME)
    assert value["AccessKeyId"] != partner_user.first_key_id
    identity = boto3.client(
        "sts",
        aws_access_key_id=value["AccessKeyId"],
        aws_secret_access_key=value["SecretAccessKey"],
    ).get_caller_identity()
    assert identity["Arn"].endswith(f":user/{partner_user.name}")
    # And the user holds exactly the two keys, both active
    assert _keys(partner_user.name) == {
        partner_user.first_key_id: "Active",
        value["AccessKeyId"]: "Active",
    }
    assert stages(store, NAME)[result.version_id] == ("AWSCURRENT",)


def test_a_routine_rotation_keeps_the_key_consumers_hold_working_through_its_overlap_window(
    driver: LocalRotationDriver, store: SecretStore, partner_user: PartnerUser
) -> None:
    """A partner export that read AWSCURRENT a second before the scheduled rotation (or
    got the key out of band) holds the old key. IAM allows two active keys, so the
    overlap window (`overlap_days`: how long the previous value stays usable) is kept
    for it: the routine finishSecret leaves that key active, and consumers reading
    AWSCURRENT move to the new one without a refused call. Deactivating it at the
    switch would make every scheduled rotation an outage for the exports."""
    # Given a partner export job that read AWSCURRENT just before the scheduled rotation
    held_by_consumer = current_value(store, NAME)["AccessKeyId"]
    assert held_by_consumer == partner_user.first_key_id
    # When the routine (scheduled) rotation runs through finishSecret
    result = driver.rotate(NAME)
    # Then the new key is current...
    new_key = current_value(store, NAME)["AccessKeyId"]
    assert new_key != held_by_consumer
    assert stages(store, NAME)[result.version_id] == ("AWSCURRENT",)
    # ...and the key the consumer holds still works during the overlap window
    status = _keys(partner_user.name)
    assert status[held_by_consumer] == "Active", (
        f"a routine rotation deactivated the key consumers held at the switch ({status}), "
        f"though the overlap window keeps it usable for {spec(NAME).overlap_days} days"
    )


def test_at_the_two_key_limit_an_unreferenced_inactive_key_is_deleted_first(
    driver: LocalRotationDriver, store: SecretStore, partner_user: PartnerUser
) -> None:
    """Protects the two-keys-per-user limit: an inactive key counts, and is freed first."""
    # Given the user at the limit: the current key plus an inactive one no version holds
    iam = boto3.client("iam")
    stray = iam.create_access_key(UserName=partner_user.name)["AccessKey"]["AccessKeyId"]
    iam.update_access_key(UserName=partner_user.name, AccessKeyId=stray, Status="Inactive")
    # When the secret rotates
    driver.rotate(NAME)
    # Then the stray key is gone and the user holds exactly the old and new keys
    keys = _keys(partner_user.name)
    assert stray not in keys
    assert len(keys) == 2
    assert keys[current_value(store, NAME)["AccessKeyId"]] == "Active"


def test_the_previous_key_is_deleted_on_a_later_run_after_its_grace_window(
    store: SecretStore, partner_user: PartnerUser
) -> None:
    """Protects the grace window: no early deletion, and deletion once it has passed,
    also of a previous key still active then (the daily sweep missed it): past its
    window nobody may rely on it, and the next rotation needs its slot."""
    # Given one rotation done: the old key still active, in its grace window
    _driver_with(store, AccessKeyRotator()).rotate(NAME)
    second_key = current_value(store, NAME)["AccessKeyId"]
    # When another rotation runs inside the grace window
    early = _driver_with(store, AccessKeyRotator())
    with pytest.raises(RotationFailed) as failed:
        early.rotate(NAME)
    # Then it refuses (two keys, the previous still in grace), at once, and changes nothing
    assert failed.value.step == "createSecret"
    assert isinstance(failed.value.cause, KeyLimitReached)
    assert failed.value.attempts == 1
    assert current_value(store, NAME)["AccessKeyId"] == second_key
    assert _keys(partner_user.name) == {partner_user.first_key_id: "Active", second_key: "Active"}
    assert not any("AWSPENDING" in s for s in stages(store, NAME).values())
    # When a later run comes after the grace window, no sweep having deactivated the key
    _driver_with(store, AccessKeyRotator(now=_days_later(8))).rotate(NAME)
    # Then the first key is deleted and the second, now the previous one, is still usable
    third_key = current_value(store, NAME)["AccessKeyId"]
    assert _keys(partner_user.name) == {second_key: "Active", third_key: "Active"}


def test_emergency_rotation_skips_the_grace_window_and_deactivates_the_leaked_key(
    store: SecretStore, partner_user: PartnerUser
) -> None:
    """Protects the leak response: the leaked key is refused by IAM at once."""
    # Given a rotation just done (previous key in grace) and the new key leaked
    _driver_with(store, AccessKeyRotator()).rotate(NAME)
    leaked = current_value(store, NAME)["AccessKeyId"]
    # When an emergency rotation runs
    _driver_with(store, AccessKeyRotator()).rotate(NAME, emergency=True)
    # Then the leaked key is inactive, the key before it deleted, and no AWSPREVIOUS left
    keys = _keys(partner_user.name)
    assert keys[leaked] == "Inactive"
    assert partner_user.first_key_id not in keys
    assert keys[current_value(store, NAME)["AccessKeyId"]] == "Active"
    assert not any("AWSPREVIOUS" in s for s in stages(store, NAME).values())


def test_an_orphaned_active_key_from_a_failed_create_is_removed(
    driver: LocalRotationDriver, store: SecretStore, partner_user: PartnerUser
) -> None:
    """Protects against key leaks from a crash between CreateAccessKey and the secret write."""
    # Given an active key whose secret no version holds (its create crashed before storing)
    orphan = boto3.client("iam").create_access_key(UserName=partner_user.name)["AccessKey"]
    # When the rotation runs
    driver.rotate(NAME)
    # Then the orphan is deleted rather than left usable by whoever saw it
    assert orphan["AccessKeyId"] not in _keys(partner_user.name)


def test_sts_check_retries_while_iam_propagates__stubber_for_sts_because_moto_sts_never_fails(
    store: SecretStore, partner_user: PartnerUser
) -> None:
    """Protects testSecret against IAM's eventual consistency: two refusals, then success.

    Stubber for the single STS call only (moto's STS never refuses a fresh key); IAM
    and Secrets Manager stay on the moto server.
    """
    expected_arn = boto3.client("iam").get_user(UserName=partner_user.name)["User"]["Arn"]
    stubbed = boto3.client("sts", region_name="us-east-1")
    stubber = Stubber(stubbed)
    for _ in range(2):
        stubber.add_client_error(
            "get_caller_identity", "InvalidClientTokenId", http_status_code=403
        )
    stubber.add_response(
        "get_caller_identity", {"UserId": "AIDA", "Account": "123456789012", "Arn": expected_arn}
    )
    stubber.activate()
    pauses: list[float] = []
    rotator = AccessKeyRotator(sts_factory=lambda *_: stubbed, sleep=pauses.append)
    _driver_with(store, rotator).rotate(NAME)
    stubber.assert_no_pending_responses()
    assert pauses == [1.0, 2.0]
    assert current_value(store, NAME)["AccessKeyId"] != partner_user.first_key_id


def test_a_key_that_signs_as_someone_else_is_never_promoted__stubber_for_sts(
    store: SecretStore, partner_user: PartnerUser
) -> None:
    """Protects promotion: testSecret failing leaves AWSCURRENT and the old key working.

    Stubber for STS only: moto's STS cannot answer with another identity on demand.
    """
    stubbed = boto3.client("sts", region_name="us-east-1")
    stubber = Stubber(stubbed)
    for _ in range(3):
        stubber.add_response(
            "get_caller_identity",
            {"UserId": "AIDA", "Account": "123456789012", "Arn": "arn:aws:iam::1:user/other"},
        )
    stubber.activate()
    driver = _driver_with(store, AccessKeyRotator(sts_factory=lambda *_: stubbed))
    with pytest.raises(RotationFailed) as failed:
        driver.rotate(NAME)
    assert failed.value.step == "testSecret"
    assert current_value(store, NAME)["AccessKeyId"] == partner_user.first_key_id
    assert _keys(partner_user.name)[partner_user.first_key_id] == "Active"


def test_a_new_key_whose_secret_cannot_be_stored_is_deleted_at_once(
    partner_user: PartnerUser,
) -> None:
    """Protects "store AWSPENDING before anything can orphan it": no unstored key survives.

    The failure is injected with a botocore before-call hook on a dedicated client to
    the moto server (moto cannot fail PutSecretValue on demand); the call is refused
    before it is sent, exactly like a network error.
    """
    client = boto3.client("secretsmanager")
    refusals = {"left": 3}

    def refuse_put(**_: object) -> None:
        if refusals["left"] > 0:
            refusals["left"] -= 1
            raise ConnectionError("Secrets Manager unreachable")

    client.meta.events.register("before-call.secrets-manager.PutSecretValue", refuse_put)
    store = SecretStore(client, caller="test")
    with pytest.raises(RotationFailed) as failed:
        _driver_with(store, AccessKeyRotator()).rotate(NAME)
    assert failed.value.step == "createSecret"
    # Every key created during the three failed attempts was deleted again.
    assert _keys(partner_user.name) == {partner_user.first_key_id: "Active"}
    # And once Secrets Manager answers, the rotation completes normally.
    _driver_with(store, AccessKeyRotator()).rotate(NAME)
    assert len(_keys(partner_user.name)) == 2


def test_a_stored_key_whose_answer_was_lost_is_kept_and_the_rotation_completes(
    partner_user: PartnerUser,
) -> None:
    """An error after PutSecretValue reached Secrets Manager (the answer was lost):
    the key is in AWSPENDING, so deleting it would leave a pending value no retry
    could ever test. The failure is injected with a botocore after-call hook on a
    dedicated client to the moto server; the write itself went through."""
    client = boto3.client("secretsmanager")
    lost = {"left": 1}

    def lose_answer(**_: object) -> None:
        if lost["left"] > 0:
            lost["left"] -= 1
            raise ConnectionError("read timeout")

    client.meta.events.register("after-call.secrets-manager.PutSecretValue", lose_answer)
    store = SecretStore(client, caller="test")

    result = _driver_with(store, AccessKeyRotator()).rotate(NAME)

    assert result.attempts["createSecret"] == 2
    new_key = current_value(store, NAME)["AccessKeyId"]
    assert _keys(partner_user.name)[new_key] == "Active"
