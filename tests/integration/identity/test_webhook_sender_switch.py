"""The upstream feed learns a new webhook secret from on-call, not from the rotation:
until it is told, it signs with AWSPREVIOUS, which the API still accepts. The next
routine rotation would drop that value and refuse every delivery. The API records
which version signed each accepted delivery, and a routine rotation is refused
while the sender's last accepted delivery was signed with AWSPREVIOUS; an
emergency is not (a leaked secret must stop working whatever the sender holds)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from functions.rotate_iam.generated import SenderStillOnPreviousSecret
from functions.shared import names
from functions.shared.identity import webhook_signers
from functions.shared.rotation.driver import LocalRotationDriver, RotationFailed
from functions.shared.rotation.store import SecretStore
from tests.integration.identity.test_webhooks import post, signed_headers
from tests.support.identity import (
    recall_event,
    reset_identity_caches,
    secret_value,
    webhook_secret_id,
)

NAME = "webhook-signing-secret"


@pytest.fixture
def driver(world) -> LocalRotationDriver:
    return LocalRotationDriver(
        store=SecretStore(caller="test"), backoff_seconds=0.0, sleep=lambda _: None
    )


def _rotate(driver: LocalRotationDriver, *, emergency: bool = False) -> str:
    """Rotate; return the new current secret. The API instance reloads its cache."""
    driver.rotate(NAME, emergency=emergency)
    reset_identity_caches()
    return str(secret_value(webhook_secret_id(), "AWSCURRENT")["secret"])


def _deliver(secret: str, source_id: str) -> None:
    body = recall_event(source_id=source_id)
    response = post(body, signed_headers(secret, body))
    assert response.status == 200, response.body


def _current_version() -> str:
    from tests.support.identity import client

    answer = client("secretsmanager").describe_secret(SecretId=webhook_secret_id())
    return str(next(v for v, s in answer["VersionIdsToStages"].items() if "AWSCURRENT" in s))


def test_a_routine_rotation_waits_for_the_sender_to_switch(world, driver):
    # Given a rotation the sender was not told about: it still signs with the old secret
    first = world.webhook_secret
    _deliver(first, "CPSC-1")
    second = _rotate(driver)
    _deliver(first, "CPSC-2")
    before = _current_version()

    # When the next routine rotation runs
    with pytest.raises(RotationFailed) as failed:
        driver.rotate(NAME)

    # Then it is refused before anything is stored, saying why and what to do
    assert isinstance(failed.value.__cause__, SenderStillOnPreviousSecret)
    message = str(failed.value.__cause__)
    assert "signed with the previous secret" in message
    assert "emergency" in message
    assert _current_version() == before
    # and the sender's deliveries are still accepted, with the old secret and the new
    reset_identity_caches()
    _deliver(first, "CPSC-3")
    _deliver(second, "CPSC-4")


def test_once_a_delivery_signed_with_the_current_secret_arrives_rotation_goes_ahead(world, driver):
    # Given a sender that was on the previous secret and has now switched
    first = world.webhook_secret
    second = _rotate(driver)
    _deliver(first, "CPSC-1")
    _deliver(second, "CPSC-2")

    # When the routine rotation runs
    third = _rotate(driver)

    # Then it completes, and the sender's current secret is still accepted beside the new
    assert third not in (first, second)
    _deliver(second, "CPSC-3")
    _deliver(third, "CPSC-4")


def test_a_sender_signing_with_both_secrets_counts_as_switched(world, driver):
    # Given a sender that signs each delivery with the old and the new secret
    first = world.webhook_secret
    second = _rotate(driver)
    body = recall_event(source_id="CPSC-1")
    headers = signed_headers(first, body)
    moment = int(headers["webhook-timestamp"])
    also = Webhook(second).sign(
        headers["webhook-id"], datetime.fromtimestamp(moment, tz=UTC), body.decode()
    )
    headers["webhook-signature"] = f"{headers['webhook-signature']} {also}"
    assert post(body, headers).status == 200

    # When the routine rotation runs, Then it completes
    _rotate(driver)


def test_an_emergency_rotation_is_never_held_back_by_the_sender(world, driver):
    # Given a sender still on the previous secret
    first = world.webhook_secret
    _rotate(driver)
    _deliver(first, "CPSC-1")

    # When the secret leaked and is rotated as an emergency
    _rotate(driver, emergency=True)

    # Then the old secret is refused at once
    reset_identity_caches()
    body = recall_event(source_id="CPSC-2")
    assert post(body, signed_headers(first, body)).status == 401


def test_a_secret_nobody_delivered_with_rotates_as_before(world, driver):
    # Given two rotations with no delivery at all
    _rotate(driver)
    # When the next one runs, Then nothing holds it back
    _rotate(driver)
    _rotate(driver)


def test_the_use_record_names_the_version_not_the_secret(world, driver):
    """The table holds version ids and times only: a leaked table copy is no secret."""
    from functions.shared import names
    from tests.support.identity import client

    _deliver(world.webhook_secret, "CPSC-1")
    items = client("dynamodb").scan(TableName=names.WEBHOOK_NONCE_TABLE)["Items"]
    use = [i for i in items if i["pk"]["S"].startswith("webhook-signer#")]
    assert [i["pk"]["S"] for i in use] == [f"webhook-signer#{_current_version()}"]
    assert world.webhook_secret not in json.dumps(items)


def test_a_delivery_stands_when_its_signer_cannot_be_recorded(world, monkeypatch):
    """The record is bookkeeping for rotation: DynamoDB failing on it must not turn a
    stored recall into an error the sender retries."""
    from functions.shared.identity.webhook_signers import SIGNER_SPACE
    from tests.support.aws_faults import FAIL, PASS, faulty_aws_endpoint

    def signer_writes(target: str, body: bytes) -> str:
        return FAIL if target.endswith("UpdateItem") and SIGNER_SPACE.encode() in body else PASS

    with faulty_aws_endpoint(monkeypatch) as faults:
        faults.rule = signer_writes
        # When a delivery is stored and its signer's record cannot be written
        _deliver(world.webhook_secret, "CPSC-1")
    # Then the delivery was accepted, and the write was attempted
    assert faults.disturbed(FAIL)
    assert world.recall_count() == 1


def test_a_warm_instance_writes_a_signer_at_most_once_a_minute(world, monkeypatch):
    """One more DynamoDB write per delivery would double the feed's writes for a figure
    that only needs the order of two versions' last uses."""
    from functions.shared.identity.webhook_signers import SIGNER_SPACE
    from tests.support.aws_faults import PASS, faulty_aws_endpoint

    writes: list[bytes] = []

    def count(target: str, body: bytes) -> str:
        if target.endswith("UpdateItem") and SIGNER_SPACE.encode() in body:
            writes.append(body)
        return PASS

    with faulty_aws_endpoint(monkeypatch) as faults:
        faults.rule = count
        for n in range(3):
            _deliver(world.webhook_secret, f"CPSC-{n}")
    # One write per record: the version's last use, and which version signed last
    assert len(writes) == 2
    assert sum(webhook_signers.LAST_SIGNER_KEY.encode() in body for body in writes) == 1


def test_babyshield_secrets_says_which_secret_the_feed_signs_with(world, driver, capsys):
    """On-call should learn that the feed has not switched before the scheduled
    rotation fails, not from the rotation alarm."""
    from ops.cli import main

    # Given a sender still on the previous secret
    first = world.webhook_secret
    second = _rotate(driver)
    _deliver(first, "CPSC-1")

    # When on-call lists the secrets
    assert main(["secrets"]) == 0
    # Then the note says so and what to do
    out = capsys.readouterr().out
    assert "webhook-signing-secret: the feed still signs with the previous secret" in out
    assert "give it the current one" in out
    assert main(["secrets", "--json"]) == 0
    row = next(
        r for r in json.loads(capsys.readouterr().out) if r["name"] == "webhook-signing-secret"
    )
    assert row["feed_signs_with"]["stage"] == "AWSPREVIOUS"
    assert row["feed_signs_with"]["current_signed_at"] is None

    # And once the sender switched, the note says that instead
    _deliver(second, "CPSC-2")
    assert main(["secrets"]) == 0
    out = capsys.readouterr().out
    assert "webhook-signing-secret: the feed signs with the current secret" in out
    assert second not in out
    assert first not in out


def _next_second() -> None:
    time.sleep(1.05 - (time.time() % 1.0))


def test_a_previous_secret_delivery_after_a_current_one_still_holds_the_rotation_back(
    world, driver
):
    """A sender that tried the new secret and went back to the old one (a rolled-back
    deploy, one worker of several not yet switched) has not switched. The
    per-instance write throttle once dropped the write of that last AWSPREVIOUS
    delivery (its version was written less than a minute before), so the stored
    order said the opposite and the rotation went ahead: it skips a write now only
    while the same version keeps signing."""
    # Given a rotation the sender was told about late
    first = world.webhook_secret
    second = _rotate(driver)
    # and, on one warm instance, a delivery signed with the old secret, one with the
    # new, and then, a second later, one with the old again
    _deliver(first, "CPSC-1")
    _deliver(second, "CPSC-2")
    _next_second()
    _deliver(first, "CPSC-3")

    # When the next routine rotation runs
    # Then it is refused: the last accepted delivery was signed with AWSPREVIOUS
    with pytest.raises(RotationFailed):
        driver.rotate(NAME)


def test_the_daily_check_reports_a_feed_still_on_the_previous_secret(world, driver, capsys):
    """The reminder to give the feed its new secret comes the day after a rotation
    (the babyshield-webhook-feed-on-previous-secret alarm), not 90 days later as the
    next rotation's refusal."""
    from functions.shared.rotation.age import publish_secret_ages

    def reported() -> float:
        documents = [
            json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line
        ]
        [value] = [
            doc[names.METRIC_WEBHOOK_FEED_ON_PREVIOUS]
            for doc in documents
            if names.METRIC_WEBHOOK_FEED_ON_PREVIOUS in doc
        ]
        # One datapoint, under the service dimension alone (the alarm's)
        [directive] = next(
            doc for doc in documents if names.METRIC_WEBHOOK_FEED_ON_PREVIOUS in doc
        )["_aws"]["CloudWatchMetrics"]
        assert directive["Dimensions"] == [["service"]]
        [number] = value if isinstance(value, list) else [value]
        return float(number)

    # Given a rotation the feed has not been told about
    first = world.webhook_secret
    second = _rotate(driver)
    _deliver(first, "CPSC-1")
    capsys.readouterr()
    # When the daily check runs, Then it reports the feed on the previous secret
    assert publish_secret_ages(SecretStore(caller="test"))["feed_on_previous"] is True
    assert reported() == 1
    # And once the feed signs with the current one, it reports 0
    _deliver(second, "CPSC-2")
    assert publish_secret_ages(SecretStore(caller="test"))["feed_on_previous"] is False
    assert reported() == 0


class _Instance:
    """One warm Lambda instance's per-process state of webhook_signers: the write
    throttle (`_use_written`). Each instance of the API is its own process; in one
    test process, swapping this dict in and out is what moving between them is."""

    def __init__(self) -> None:
        self.use_written: dict[str, float] = {}

    def __enter__(self) -> _Instance:
        webhook_signers._use_written.clear()
        webhook_signers._use_written.update(self.use_written)
        return self

    def __exit__(self, *_: object) -> None:
        self.use_written = dict(webhook_signers._use_written)
        webhook_signers._use_written.clear()


def test_a_feed_back_on_the_old_secret_via_another_instance_still_holds_rotation_back(
    world, driver
):
    """A feed that goes back to the old secret after one delivery with the new (a
    rolled-back deploy, one worker of several not yet switched) is on the old secret,
    also when that delivery reaches an instance that wrote an old-secret use a moment
    ago: its write throttle cannot know what other instances wrote since."""
    first = world.webhook_secret
    second = _rotate(driver)
    instance_a, instance_b = _Instance(), _Instance()

    # Given the feed on the old secret, reaching instance A
    with instance_a:
        _deliver(first, "CPSC-1")
    # then one worker with the new secret, reaching instance B
    _next_second()
    with instance_b:
        _deliver(second, "CPSC-2")
    # and then the old secret again, reaching instance A a few seconds later
    _next_second()
    with instance_a:
        _deliver(first, "CPSC-3")

    # When the scheduled routine rotation runs
    # Then it is refused: the last accepted delivery used AWSPREVIOUS
    with pytest.raises(RotationFailed):
        driver.rotate(NAME)


def test_an_old_secret_delivery_in_the_same_second_as_a_new_one_still_holds_rotation_back(
    world, driver
):
    """A feed with one worker switched and one not sends, within one second, a
    delivery signed with the new secret and then one with the old: the uses are
    ordered to the millisecond, not the second, so the feed is on the old secret."""
    first = world.webhook_secret
    second = _rotate(driver)
    _deliver(first, "CPSC-0")  # the feed before the switch (and a warm instance)
    _next_second()

    # Given, within one second, the new secret and then the old one
    started = time.time()
    _deliver(second, "CPSC-1")
    _deliver(first, "CPSC-2")
    assert int(time.time()) == int(started), "the two deliveries did not fit in one second"

    # When the routine rotation runs, Then it is refused
    with pytest.raises(RotationFailed):
        driver.rotate(NAME)


def _daily_datapoint(capsys) -> float:
    """The WebhookFeedOnPreviousSecret datapoint of the daily run just made."""
    documents = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line
    ]
    [value] = [
        doc[names.METRIC_WEBHOOK_FEED_ON_PREVIOUS]
        for doc in documents
        if names.METRIC_WEBHOOK_FEED_ON_PREVIOUS in doc
    ]
    [number] = value if isinstance(value, list) else [value]
    return float(number)


def test_a_feed_left_on_a_secret_an_emergency_retired_is_reported_by_the_daily_check(
    world, driver, capsys
):
    """After an emergency rotation the old value is refused at once and no AWSPREVIOUS
    is left, so the order of the two live versions' uses says nothing. A feed never
    handed its new secret has every delivery refused with a 401, which
    FeedDeliveriesRefused does not count (its signature no longer verifies) and no
    alarm watches: the daily check's alarmed datapoint is what tells on-call that
    recalls have stopped being stored."""
    from functions.shared.rotation.age import publish_secret_ages
    from ops.cli import main

    # Given the feed delivering with the current secret
    first = world.webhook_secret
    _deliver(first, "CPSC-BEFORE")
    # and an emergency rotation the feed was not told about
    second = _rotate(driver, emergency=True)
    body = recall_event(source_id="CPSC-AFTER")
    assert post(body, signed_headers(first, body)).status == 401
    capsys.readouterr()

    # When the daily check runs
    report = publish_secret_ages(SecretStore(caller="test"))

    # Then its alarmed datapoint says the feed is not on the current secret
    assert report["feed_on_previous"] is True
    assert _daily_datapoint(capsys) == 1
    # and `babyshield secrets` says the feed's secret is no longer accepted
    assert main(["secrets"]) == 0
    out = capsys.readouterr().out
    assert "signed with a secret no longer accepted" in out
    assert "give it the current one" in out
    assert main(["secrets", "--json"]) == 0
    row = next(
        r for r in json.loads(capsys.readouterr().out) if r["name"] == "webhook-signing-secret"
    )
    assert row["feed_signs_with"]["stage"] == "retired"
    assert row["feed_signs_with"]["previous_version"] is None

    # And once the feed is given the new secret and delivers with it, it reports 0
    _deliver(second, "CPSC-GIVEN")
    assert publish_secret_ages(SecretStore(caller="test"))["feed_on_previous"] is False
    assert _daily_datapoint(capsys) == 0


def test_the_last_signer_record_holds_the_later_of_two_uses_written_out_of_order(world):
    """Two instances may write their uses in the other order than the deliveries
    arrived: the record of which version signed last keeps the later one, and an
    old-secret use at the same millisecond as a current one wins, as the per-version
    order counts both at one moment as still on the old secret."""
    from functions.shared.identity.webhooks import VerifiedWebhook

    now = time.time()
    current = VerifiedWebhook("msg_a", int(now), "version-current")
    previous = VerifiedWebhook("msg_b", int(now), "version-previous", signed_with_previous=True)

    # Given the later use (the current version's) written first
    webhook_signers.record_secret_use(current, now=now + 1)
    # When the earlier one (the previous version's) arrives late
    webhook_signers.record_secret_use(previous, now=now)
    # Then the later one stands
    assert webhook_signers.last_accepted_signer() == (
        "version-current",
        int((now + 1) * 1000) / 1000,
    )

    # And at one millisecond, the previous version's use wins
    webhook_signers.record_secret_use(previous, now=now + 1)
    last = webhook_signers.last_accepted_signer()
    assert last is not None
    assert last[0] == "version-previous"
