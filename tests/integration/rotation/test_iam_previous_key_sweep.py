"""The daily sweep that deactivates the previous IAM access key once its overlap window
has passed (functions/rotate_iam/key_sweep.py), through the real rotate_iam handler and
rotations against moto's IAM and Secrets Manager over HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from functions.rotate_iam.key_sweep import SWEEP_EVENT, PreviousKeySweep, SweepFailed
from functions.shared.inventory import SecretSpec, spec
from functions.shared.rotation.driver import DriverContext, LocalRotationDriver, RotationFailed
from functions.shared.rotation.protocol import RotationError
from functions.shared.rotation.store import SecretMetadata, SecretStore
from tests.integration.rotation.conftest import PartnerUser
from tests.integration.rotation.state import current_value, stages
from tests.support.logs import json_log_lines, raw_log_text

NAME = "iam-partner-export"
DEACTIVATED = "previous access key deactivated: its overlap window has passed"


def _keys(user: str) -> dict[str, str]:
    listed = boto3.client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"]
    return {key["AccessKeyId"]: key["Status"] for key in listed}


def _days_later(days: float) -> Callable[[], datetime]:
    return lambda: datetime.now(UTC) + timedelta(days=days)


def _sweep_through_the_handler(event: Any) -> Any:
    from functions.rotate_iam.handler import lambda_handler

    return lambda_handler(event, DriverContext(function_name="babyshield-rotate-iam"))


def test_the_scheduled_sweep_leaves_the_previous_key_active_inside_its_window(
    driver: LocalRotationDriver, store: SecretStore, partner_user: PartnerUser
) -> None:
    """The rule's event runs the sweep in rotate_iam; a day after a rotation the old
    key is still some consumers' and stays active, as it does to the window's last day."""
    # Given a routine rotation just done
    driver.rotate(NAME)
    new_key = current_value(store, NAME)["AccessKeyId"]
    # When the daily rule invokes rotate_iam with its event, and a run on the sixth day
    outcome = _sweep_through_the_handler(dict(SWEEP_EVENT))
    later = PreviousKeySweep(store=store, now=_days_later(6.9)).run()
    # Then both report nothing deactivated and both keys stay active
    assert outcome == {"outcome": "swept", "deactivated": []}
    assert later == {"outcome": "swept", "deactivated": []}
    assert _keys(partner_user.name) == {partner_user.first_key_id: "Active", new_key: "Active"}


def test_the_sweep_deactivates_the_previous_key_once_its_window_has_passed(
    driver: LocalRotationDriver,
    store: SecretStore,
    partner_user: PartnerUser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past `overlap_days` since the promotion the old key is no one's to rely on: the
    sweep deactivates it, says so in one line (names and ids, never a value), and audits
    the secret values it read."""
    caplog.set_level("INFO")
    # Given a routine rotation done eight days ago
    driver.rotate(NAME)
    current = current_value(store, NAME)
    caplog.clear()
    # When the sweep runs
    outcome = PreviousKeySweep(now=_days_later(8)).run()
    # Then the old key is inactive (kept for its last-used data) and the current one active
    assert outcome == {"outcome": "swept", "deactivated": [NAME]}
    assert _keys(partner_user.name) == {
        partner_user.first_key_id: "Inactive",
        current["AccessKeyId"]: "Active",
    }
    # And one line says which key of which secret, with no secret value in any line
    lines = json_log_lines(caplog)
    (said,) = [line for line in lines if line.get("message") == DEACTIVATED]
    assert said["secret"] == spec(NAME).secret_name
    assert said["access_key_id"] == partner_user.first_key_id
    assert said["user"] == partner_user.name
    assert said["overlap_days"] == spec(NAME).overlap_days
    text = raw_log_text(caplog)
    assert partner_user.first_secret not in text
    assert current["SecretAccessKey"] not in text
    # And each value it read left an audit line
    reads = [line for line in lines if line.get("audit_event") == "secret_read"]
    assert reads
    assert {(line["secret"], line["caller"]) for line in reads} == {
        (spec(NAME).secret_name, "rotate_iam:sweep")
    }


def test_a_second_sweep_changes_nothing_and_a_key_gone_is_no_error(
    driver: LocalRotationDriver,
    store: SecretStore,
    partner_user: PartnerUser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The rule may fire twice (EventBridge delivers at least once, Lambda retries):
    a key already inactive is not reported again, and one deleted by hand is no failure."""
    caplog.set_level("INFO")
    driver.rotate(NAME)
    sweep = PreviousKeySweep(store=store, now=_days_later(8))
    sweep.run()
    before = _keys(partner_user.name)
    caplog.clear()
    # When it runs again, and again once the old key was deleted
    again = sweep.run()
    boto3.client("iam").delete_access_key(
        UserName=partner_user.name, AccessKeyId=partner_user.first_key_id
    )
    after_delete = sweep.run()
    # Then nothing is reported or changed
    assert again == after_delete == {"outcome": "swept", "deactivated": []}
    assert _keys(partner_user.name) == {
        key: status for key, status in before.items() if key != partner_user.first_key_id
    }
    assert not [line for line in json_log_lines(caplog) if line.get("message") == DEACTIVATED]


def test_an_emergency_deactivates_at_once_and_leaves_the_sweep_nothing(
    driver: LocalRotationDriver, store: SecretStore, partner_user: PartnerUser
) -> None:
    """The emergency does not wait for the window: finishSecret deactivates the leaked
    key and takes AWSPREVIOUS away, so a later sweep finds no previous key to touch."""
    # Given a key leaked from AWSCURRENT
    leaked = partner_user.first_key_id
    # When the emergency rotation runs
    driver.rotate(NAME, emergency=True)
    new_key = current_value(store, NAME)["AccessKeyId"]
    # Then the leaked key is refused at once
    assert _keys(partner_user.name) == {leaked: "Inactive", new_key: "Active"}
    assert not any("AWSPREVIOUS" in labels for labels in stages(store, NAME).values())
    # And the sweep past the window has nothing to do
    assert PreviousKeySweep(store=store, now=_days_later(8)).run()["deactivated"] == []
    assert _keys(partner_user.name) == {leaked: "Inactive", new_key: "Active"}


def test_a_secret_that_cannot_be_swept_does_not_stop_the_others_and_fails_the_run(
    driver: LocalRotationDriver,
    store: SecretStore,
    partner_user: PartnerUser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One secret's failure (here: a secret that does not exist) is logged by name, the
    others are still swept, and the run fails at the end so that Lambda retries it and
    dead-letters it, and the queue's alarm pages."""
    caplog.set_level("INFO")
    driver.rotate(NAME)
    missing = SecretSpec(
        "iam-missing-export", "iam-access-key", 60, "rotate_iam", "not created in this test"
    )
    sweep = PreviousKeySweep(store=store, specs=[missing, spec(NAME)], now=_days_later(8))
    with pytest.raises(SweepFailed, match="iam-missing-export"):
        sweep.run()
    assert _keys(partner_user.name)[partner_user.first_key_id] == "Inactive"
    (failed,) = [
        line
        for line in json_log_lines(caplog)
        if line.get("message") == "previous access key sweep failed"
    ]
    assert failed["secret"] == missing.secret_name
    assert failed["error_code"] == "ResourceNotFoundException"


def test_a_current_value_that_names_no_key_leaves_the_previous_key_working(
    driver: LocalRotationDriver, store: SecretStore, partner_user: PartnerUser
) -> None:
    """An operator pastes text over AWSCURRENT: the real key is now AWSPREVIOUS, and the
    only one a consumer can use. Past the window the sweep still leaves it active; the
    next rotation replaces the pasted value."""
    driver.rotate(NAME)
    working = current_value(store, NAME)["AccessKeyId"]
    secret_id = spec(NAME).secret_name
    current = store.describe(secret_id).version_with("AWSCURRENT")
    pasted = store.client.put_secret_value(
        SecretId=secret_id, SecretString="AKIA... pasted as text", VersionStages=["PASTED"]
    )["VersionId"]
    store.promote(secret_id, pasted, current)
    store.remove_stage(secret_id, "PASTED", pasted)

    assert PreviousKeySweep(store=store, now=_days_later(8)).run()["deactivated"] == []
    assert _keys(partner_user.name)[working] == "Active"


def test_a_rotation_promoted_during_the_sweep_never_costs_the_just_replaced_key(
    store: SecretStore, partner_user: PartnerUser
) -> None:
    """The sweep reads the labels once, then the values: a rotation promoted in between
    makes AWSPREVIOUS the key that was current a moment ago. The values are read by the
    version ids of that one read, so it is the older key that goes, never that one."""
    from functions.rotate_iam.access_keys import AccessKeyRotator
    from functions.rotate_iam.rotators import ByKindRotator
    from functions.shared.rotation.protocol import run_step

    def rotating(now: Callable[[], datetime]) -> LocalRotationDriver:
        by_kind = ByKindRotator({"iam-access-key": AccessKeyRotator(now=now)})
        return LocalRotationDriver(
            store=store,
            handler=lambda event, context: run_step(event, by_kind, "rotate_iam", store),
            backoff_seconds=0.0,
        )

    rotating(_days_later(0)).rotate(NAME)
    second = current_value(store, NAME)["AccessKeyId"]
    read_before_the_promotion = store.describe(spec(NAME).secret_name)
    # A rotation past the window: the first key deleted, the second now AWSPREVIOUS
    rotating(_days_later(8)).rotate(NAME)
    third = current_value(store, NAME)["AccessKeyId"]

    class LabelsReadBeforeThePromotion(SecretStore):
        """The sweep's first DescribeSecret is answered as it was before the promotion."""

        stale_answers = 1

        def describe(self, secret_id: str) -> SecretMetadata:
            if self.stale_answers:
                self.stale_answers -= 1
                return read_before_the_promotion
            return super().describe(secret_id)

    PreviousKeySweep(store=LabelsReadBeforeThePromotion(caller="test"), now=_days_later(8)).run()

    assert _keys(partner_user.name) == {second: "Active", third: "Active"}


@pytest.mark.parametrize(
    "event",
    [
        {**SWEEP_EVENT, "Step": "finishSecret"},
        {"babyshield": "deactivate-previous-iam-keys-now"},
        {"Babyshield": next(iter(SWEEP_EVENT.values()))},
        [dict(SWEEP_EVENT)],
    ],
    ids=["extra field", "other value", "other key", "in a list"],
)
def test_only_the_exact_sweep_event_runs_the_sweep(
    event: Any, driver: LocalRotationDriver, store: SecretStore, partner_user: PartnerUser
) -> None:
    """Anything but the rule's exact input is a rotation step's event and meets the
    rotation gate, which refuses it: a near miss neither sweeps nor rotates."""
    driver.rotate(NAME)
    before = (_keys(partner_user.name), stages(store, NAME))
    with pytest.raises(RotationError):
        _sweep_through_the_handler(event)
    assert (_keys(partner_user.name), stages(store, NAME)) == before


def _stopped_after_create_secret(store: SecretStore) -> LocalRotationDriver:
    """A driver whose rotation stops after createSecret, as an interrupted one does."""
    from functions.rotate_iam.handler import lambda_handler

    def create_only(event: Any, context: Any) -> Any:
        if event["Step"] != "createSecret":
            raise RotationError("stopped after createSecret for this test")
        return lambda_handler(event, context)

    return LocalRotationDriver(store=store, handler=create_only, max_attempts=1)


def _pending_key(store: SecretStore) -> str:
    metadata = store.describe(spec(NAME).secret_name)
    pending = store.read(metadata.arn, version_id=metadata.unfinished_rotation())
    assert pending is not None
    return str(pending.value["AccessKeyId"])


def test_the_key_of_a_cancelled_rotation_is_deactivated_once_its_grace_has_passed(
    driver: LocalRotationDriver,
    store: SecretStore,
    partner_user: PartnerUser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On-call cancels a rotation stopped after createSecret: the key IAM made for it
    is named by no version, so no consumer can hold it, yet it is active. The sweep
    deactivates it (an hour after its creation, so never a key a createSecret has not
    stored yet), and leaves the current key alone."""
    caplog.set_level("INFO")
    # Given a rotation stopped after createSecret and cancelled
    with pytest.raises(RotationFailed):
        _stopped_after_create_secret(store).rotate(NAME)
    orphan = _pending_key(store)
    assert driver.cancel(NAME) is not None
    # When the sweep runs within the hour, then after it
    soon = PreviousKeySweep(store=store, now=_days_later(0.5 / 24)).run()
    assert _keys(partner_user.name)[orphan] == "Active"
    later = PreviousKeySweep(store=store, now=_days_later(2 / 24)).run()
    # Then only the unnamed key is deactivated, and one line says which
    assert soon == {"outcome": "swept", "deactivated": []}
    assert later == {"outcome": "swept", "deactivated": [NAME]}
    assert _keys(partner_user.name) == {partner_user.first_key_id: "Active", orphan: "Inactive"}
    (said,) = [
        line
        for line in json_log_lines(caplog)
        if line.get("message") == "access key no version names deactivated"
    ]
    assert (said["access_key_id"], said["user"]) == (orphan, partner_user.name)
    # And the next rotation goes on as ever: it deletes the inactive key
    driver.rotate(NAME)
    assert orphan not in _keys(partner_user.name)


def test_a_rotation_in_flight_keeps_its_key_however_old(
    driver: LocalRotationDriver, store: SecretStore, partner_user: PartnerUser
) -> None:
    """A rotation stopped after createSecret, not cancelled: its key is AWSPENDING's and
    the rotation's to finish or cancel, so the sweep leaves it active."""
    with pytest.raises(RotationFailed):
        _stopped_after_create_secret(store).rotate(NAME)
    pending = _pending_key(store)
    assert PreviousKeySweep(store=store, now=_days_later(3)).run()["deactivated"] == []
    assert _keys(partner_user.name)[pending] == "Active"
    driver.rotate(NAME, resume=True)
    assert current_value(store, NAME)["AccessKeyId"] == pending


def test_a_previous_version_that_does_not_parse_leaves_every_key_active(
    driver: LocalRotationDriver, store: SecretStore, partner_user: PartnerUser
) -> None:
    """AWSPREVIOUS was pasted over by hand: the key it named is unknown, and could be
    any the user holds, so the sweep deactivates nothing it cannot tell is unnamed."""
    driver.rotate(NAME)
    secret_id = spec(NAME).secret_name
    metadata = store.describe(secret_id)
    pasted = store.client.put_secret_value(
        SecretId=secret_id, SecretString="not json", VersionStages=["AWSPREVIOUS"]
    )["VersionId"]
    assert store.describe(secret_id).version_with("AWSPREVIOUS") == pasted
    before = _keys(partner_user.name)
    assert metadata.version_with("AWSPREVIOUS") != pasted
    assert PreviousKeySweep(store=store, now=_days_later(1)).run()["deactivated"] == []
    assert _keys(partner_user.name) == before
    assert set(before.values()) == {"Active"}


def test_the_key_of_a_rotation_stopped_with_cancel_rotate_secret_is_deactivated(
    store: SecretStore, partner_user: PartnerUser
) -> None:
    """Secrets Manager's CancelRotateSecret switches rotation off and leaves AWSPENDING
    on the version (the AWS API reference tells you to remove the label yourself). With
    rotation off nothing finishes that version or deletes its key, so the sweep takes
    it for a key no version names: deactivated once its hour of grace has passed.

    moto cancels only a rotation whose Lambda function it hosts, so DescribeSecret's
    answer is given as it is after a cancel, rotation off; the rest is real: a key IAM
    created for a createSecret, stored as AWSPENDING."""
    import dataclasses

    secret_id = spec(NAME).secret_name

    class RotationCancelled(SecretStore):
        def describe(self, secret_id: str) -> SecretMetadata:
            return dataclasses.replace(super().describe(secret_id), rotation_enabled=False)

    cancelled = RotationCancelled(caller="test")
    created = boto3.client("iam").create_access_key(UserName=partner_user.name)["AccessKey"]
    value = {
        "kind": "iam-access-key",
        "UserName": partner_user.name,
        "AccessKeyId": created["AccessKeyId"],
        "SecretAccessKey": created["SecretAccessKey"],
    }
    store.put_pending(store.describe(secret_id).arn, str(uuid.uuid4()), value)
    orphan = _pending_key(store)

    soon = PreviousKeySweep(store=cancelled, now=_days_later(0.5 / 24)).run()
    in_flight = PreviousKeySweep(store=store, now=_days_later(2 / 24)).run()
    later = PreviousKeySweep(store=cancelled, now=_days_later(2 / 24)).run()

    # Within the grace, or with rotation on (a rotation in flight), the key stays
    assert soon == in_flight == {"outcome": "swept", "deactivated": []}
    assert later == {"outcome": "swept", "deactivated": [NAME]}
    assert _keys(partner_user.name) == {partner_user.first_key_id: "Active", orphan: "Inactive"}
