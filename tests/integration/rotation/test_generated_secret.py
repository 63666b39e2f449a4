"""Generated-secret rotation (the webhook signing secret) through the real rotate_iam handler."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pytest

from functions.shared.identity import webhooks
from functions.shared.identity.secret_versions import (
    SecretVersions,
    SecretVersionsCache,
    load_secret_versions,
)
from functions.shared.inventory import spec
from functions.shared.rotation.driver import LocalRotationDriver
from functions.shared.rotation.store import SecretStore
from tests.integration.rotation.state import current_value, stages

NAME = "webhook-signing-secret"


def _signed(secret: str, message_id: str) -> tuple[dict[str, str], bytes]:
    body = b'{"recall":"R-1"}'
    now = int(time.time())
    key = webhooks.decode_secret(secret)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(now),
        "webhook-signature": webhooks.sign(key, message_id, now, body),
    }, body


def _accepted(secret: str) -> bool:
    """Whether the API's verifier (AWSCURRENT + AWSPREVIOUS, fresh cache) accepts it."""
    headers, body = _signed(secret, "msg-1")
    keys = webhooks.live_webhook_keys(SecretVersionsCache())
    try:
        webhooks.verify_webhook(headers, body, keys, tolerance_seconds=300)
    except webhooks.WebhookRejected:
        return False
    return True


def test_rotation_makes_a_new_whsec_secret_and_keeps_the_old_one_accepted(
    driver: LocalRotationDriver, store: SecretStore, webhook_secret: str
) -> None:
    """Protects the overlap window: senders still on the old secret are not refused."""
    # Given a webhook secret in use
    # When it rotates
    result = driver.rotate(NAME)
    # Then the new value is current, in whsec_ format, and both old and new verify
    new_secret = str(current_value(store, NAME)["secret"])
    assert new_secret != webhook_secret
    assert new_secret.startswith("whsec_")
    assert len(webhooks.decode_secret(new_secret)) == 32
    assert stages(store, NAME)[result.version_id] == ("AWSCURRENT",)
    assert _accepted(new_secret)
    assert _accepted(webhook_secret)


def test_emergency_rotation_retires_the_old_secret_at_once(
    driver: LocalRotationDriver, store: SecretStore, webhook_secret: str
) -> None:
    """Protects the leak response: a leaked webhook secret stops verifying immediately."""
    # Given a webhook secret that leaked
    # When it is rotated as an emergency
    driver.rotate(NAME, emergency=True)
    # Then the old secret is refused, the new one accepted, and no AWSPREVIOUS remains
    new_secret = str(current_value(store, NAME)["secret"])
    assert not _accepted(webhook_secret)
    assert _accepted(new_secret)
    assert not any("AWSPREVIOUS" in s for s in stages(store, NAME).values())
    tags = store.describe(spec(NAME).secret_name).tags
    assert "babyshield:emergency-rotation" not in tags


def test_a_normal_rotation_after_an_emergency_keeps_the_overlap_again(
    driver: LocalRotationDriver, store: SecretStore, webhook_secret: str
) -> None:
    """Protects against an emergency marker leaking into the next, scheduled rotation."""
    driver.rotate(NAME, emergency=True)
    second = str(current_value(store, NAME)["secret"])
    driver.rotate(NAME)
    assert _accepted(second)


def test_steps_run_twice_change_nothing_the_second_time(
    store: SecretStore, webhook_secret: str
) -> None:
    """Protects idempotency: Secrets Manager may deliver any step more than once."""
    from functions.rotate_iam.handler import lambda_handler
    from functions.shared.rotation.driver import DriverContext

    arn = store.describe(spec(NAME).secret_name).arn
    token = "11111111-2222-4333-8444-555555555555"
    context = DriverContext(function_name="babyshield-rotate-iam")
    pending_values = []
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        for _ in range(2):
            lambda_handler({"Step": step, "SecretId": arn, "ClientRequestToken": token}, context)
            if step == "createSecret":
                found = store.read(arn, version_id=token)
                assert found is not None
                pending_values.append(found.value["secret"])
    assert pending_values[0] == pending_values[1]
    assert current_value(store, NAME)["secret"] == pending_values[0]
    assert stages(store, NAME)[token] == ("AWSCURRENT",)


def test_a_failing_step_is_retried_like_the_service_does(
    store: SecretStore, webhook_secret: str
) -> None:
    """Protects the driver's contract: a transient failure costs a retry, not the rotation."""
    from functions.rotate_iam.handler import lambda_handler

    failures = {"setSecret": 1, "finishSecret": 2}

    def flaky(event, context):
        if failures.get(event["Step"], 0) > 0:
            failures[event["Step"]] -= 1
            raise ConnectionError("transient")
        return lambda_handler(event, context)

    driver = LocalRotationDriver(store=store, handler=flaky, backoff_seconds=0.0)
    result = driver.rotate(NAME)
    assert result.attempts == {
        "createSecret": 1,
        "setSecret": 2,
        "testSecret": 1,
        "finishSecret": 3,
    }
    assert stages(store, NAME)[result.version_id] == ("AWSCURRENT",)


def test_a_step_that_keeps_failing_leaves_the_rotation_pending_and_resumable(
    store: SecretStore, webhook_secret: str
) -> None:
    """Protects "nothing half-written": the current value is untouched until finish."""
    from functions.rotate_iam.handler import lambda_handler
    from functions.shared.rotation.driver import RotationFailed
    from functions.shared.rotation.protocol import RotationInProgress

    def broken_test_step(event, context):
        if event["Step"] == "testSecret":
            raise ConnectionError("service down")
        return lambda_handler(event, context)

    broken = LocalRotationDriver(store=store, handler=broken_test_step, backoff_seconds=0.0)
    with pytest.raises(RotationFailed) as failed:
        broken.rotate(NAME)
    assert failed.value.step == "testSecret"
    assert current_value(store, NAME)["secret"] == webhook_secret
    assert stages(store, NAME)[failed.value.token] == ("AWSPENDING",)

    # A new rotation is refused while that one is pending; resuming finishes it.
    healthy = LocalRotationDriver(store=store, backoff_seconds=0.0)
    with pytest.raises(RotationInProgress):
        healthy.rotate(NAME)
    resumed = healthy.rotate(NAME, resume=True)
    assert resumed.version_id == failed.value.token
    assert stages(store, NAME)[failed.value.token] == ("AWSCURRENT",)


def test_cancel_drops_the_pending_version_and_keeps_the_current_one(
    store: SecretStore, webhook_secret: str
) -> None:
    """Protects the runbook's cancel path."""
    from functions.rotate_iam.handler import lambda_handler
    from functions.shared.rotation.driver import RotationFailed

    def broken_finish(event, context):
        if event["Step"] == "finishSecret":
            raise ConnectionError("down")
        return lambda_handler(event, context)

    broken = LocalRotationDriver(store=store, handler=broken_finish, backoff_seconds=0.0)
    with pytest.raises(RotationFailed) as failed:
        broken.rotate(NAME)
    healthy = LocalRotationDriver(store=store, backoff_seconds=0.0)
    assert healthy.cancel(NAME) == failed.value.token
    assert current_value(store, NAME)["secret"] == webhook_secret
    assert stages(store, NAME).get(failed.value.token, ()) == ()
    healthy.rotate(NAME)
    assert current_value(store, NAME)["secret"] != webhook_secret


def test_a_secret_wired_to_the_wrong_rotation_function_is_refused(
    store: SecretStore, webhook_secret: str
) -> None:
    """Protects against a mis-wired schedule rotating a secret with the wrong strategy."""
    from functions.rotate_jwt.handler import lambda_handler
    from functions.shared.rotation.driver import DriverContext
    from functions.shared.rotation.protocol import WrongRotationFunction

    arn = store.describe(spec(NAME).secret_name).arn
    event = {"Step": "createSecret", "SecretId": arn, "ClientRequestToken": "c" * 36}
    with pytest.raises(WrongRotationFunction):
        lambda_handler(event, DriverContext(function_name="babyshield-rotate-jwt"))
    assert not any("AWSPENDING" in s for s in stages(store, NAME).values())


def test_a_secret_without_rotation_enabled_is_never_changed(aws: str, store: SecretStore) -> None:
    """Protects the gate: a stray event cannot rotate a secret whose rotation is off."""
    from functions.rotate_iam.handler import lambda_handler
    from functions.shared.rotation.driver import DriverContext
    from functions.shared.rotation.protocol import RotationNotEnabled

    store.client.create_secret(Name=spec(NAME).secret_name, SecretString='{"secret": "x"}')
    arn = store.describe(spec(NAME).secret_name).arn
    event = {"Step": "createSecret", "SecretId": arn, "ClientRequestToken": "d" * 36}
    with pytest.raises(RotationNotEnabled):
        lambda_handler(event, DriverContext(function_name="babyshield-rotate-iam"))
    assert current_value(store, NAME) == {"secret": "x"}


def test_the_local_webhook_sender_signs_with_the_current_secret_after_a_rotation(
    driver: LocalRotationDriver, store: SecretStore, webhook_secret: str
) -> None:
    from ops.webhook import current_secret

    assert current_secret() == webhook_secret
    driver.rotate("webhook-signing-secret", emergency=True)

    assert current_secret() == str(current_value(store, "webhook-signing-secret")["secret"])


def test_the_local_webhook_senders_read_of_the_secret_is_audited(
    store: SecretStore, webhook_secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every read of a secret value writes the secret_read line (an investigator's
    who-read-what after a leak); `babyshield webhook send` reads one from a shell."""
    from ops.webhook import current_secret
    from tests.support.logs import json_log_lines

    assert current_secret() == webhook_secret

    reads = [line for line in json_log_lines(caplog) if line.get("audit_event") == "secret_read"]
    assert len(reads) == 1
    assert reads[0]["secret"] == spec("webhook-signing-secret").secret_name
    assert reads[0]["stage"] == "AWSCURRENT"
    assert reads[0]["version_id"] == store.describe(spec(NAME).secret_name).version_with(
        "AWSCURRENT"
    )
    assert reads[0]["caller"].startswith("babyshield-cli:")
    assert webhook_secret not in caplog.text


class _ManualClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class _CountingLoader:
    """The real Secrets Manager read, counted."""

    def __init__(self) -> None:
        self.loads = 0

    def __call__(self, secret_id: str) -> SecretVersions:
        self.loads += 1
        return load_secret_versions(secret_id)


@dataclass
class _WarmVerifier:
    """One API instance's webhook verifier: its own 60 s cache, a clock the test moves."""

    clock: _ManualClock
    loader: _CountingLoader
    cache: SecretVersionsCache

    def refusal(self, secret: str, message_id: str = "msg-1") -> str | None:
        """Why a message signed with `secret` is refused, or None when it is accepted."""
        headers, body = _signed(secret, message_id)
        try:
            webhooks.verify_webhook(
                headers,
                body,
                lambda: webhooks.live_webhook_keys(self.cache),
                tolerance_seconds=300,
            )
        except webhooks.WebhookRejected as rejected:
            return rejected.reason
        return None


@pytest.fixture
def warm_verifier(webhook_secret: str, monkeypatch: pytest.MonkeyPatch) -> _WarmVerifier:
    """A verifier that has just verified a webhook, so its cache holds the secret as it is."""
    from functions.shared.settings import get_settings

    monkeypatch.setenv("SECRET_CACHE_SECONDS", "60")
    get_settings.cache_clear()
    clock, loader = _ManualClock(), _CountingLoader()
    verifier = _WarmVerifier(clock, loader, SecretVersionsCache(loader=loader, clock=clock))
    assert verifier.refusal(webhook_secret) is None
    assert loader.loads == 1
    return verifier


def test_a_warm_instance_accepts_the_new_secret_at_once_after_a_scheduled_rotation(
    driver: LocalRotationDriver,
    store: SecretStore,
    webhook_secret: str,
    warm_verifier: _WarmVerifier,
) -> None:
    """Protects zero downtime: no webhook signed with the new secret is refused by an
    instance whose cache was filled before the rotation."""
    # Given an instance that verified a webhook moments before a scheduled rotation
    driver.rotate(NAME)
    new_secret = str(current_value(store, NAME)["secret"])
    # When the sender signs with the new secret during the next minute
    # Then every message is accepted, and so are those still signed with the old one
    refusals = {}
    for after in (10, 30, 59, 60):
        warm_verifier.clock.now = 1000 + after
        refusals[after] = (
            warm_verifier.refusal(new_secret),
            warm_verifier.refusal(webhook_secret),
        )
    assert refusals == dict.fromkeys((10, 30, 59, 60), (None, None))


def test_forged_webhooks_after_a_rotation_cost_one_secret_read_per_five_seconds(
    driver: LocalRotationDriver,
    store: SecretStore,
    webhook_secret: str,
    warm_verifier: _WarmVerifier,
) -> None:
    """Protects Secrets Manager: bad signatures cannot force a read per request."""
    # Given a warm instance and a rotation it has not seen yet
    driver.rotate(NAME)
    new_secret = str(current_value(store, NAME)["secret"])
    forged = json.loads(webhooks.generate_webhook_secret_value())["secret"]
    # When forged messages arrive five times a second for ten seconds
    refusals = []
    for step in range(50):
        warm_verifier.clock.now = 1001 + step * 0.2
        refusals.append(warm_verifier.refusal(forged, f"forged-{step}"))
    # Then all are refused as before, the whole flood cost two reads, and the first
    # of them already brought the new secret in
    assert refusals == ["bad_signature"] * 50
    assert warm_verifier.loader.loads == 1 + 2
    assert warm_verifier.refusal(new_secret) is None
    assert warm_verifier.loader.loads == 1 + 2
