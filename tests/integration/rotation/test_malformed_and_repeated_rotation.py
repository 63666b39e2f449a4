"""Rotation past a malformed previous value, and routine JWT rotations close together:
a bad value must never block the rotation that replaces it, and a routine rotation must
never refuse an unexpired token."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from functions.rotate_jwt.key_pair import JwtKeyRotator, PreviousKeyStillLive
from functions.shared.identity.tokens import TokenRejected, issue_access_token, verify_access_token
from functions.shared.inventory import spec
from functions.shared.rotation.driver import LocalRotationDriver, RotationFailed
from functions.shared.rotation.store import EMERGENCY_TAG, SecretStore
from tests.integration.rotation.state import (
    current_value,
    jwt_driver,
    jwt_keys,
    paste_then_restore,
    stages,
)
from tests.support.logs import raw_log_text

JWT = "jwt-signing-key"


def _iam_keys(user: str) -> dict[str, str]:
    found = boto3.client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"]
    return {key["AccessKeyId"]: key["Status"] for key in found}


def _paste_malformed_webhook_secret(store: SecretStore) -> str:
    """An operator pastes the bare secret, not its JSON, as the current value."""
    return str(
        store.client.put_secret_value(
            SecretId=spec("webhook-signing-secret").secret_name,
            SecretString="whsec_pasted-without-json",  # pragma: allowlist secret
            VersionStages=["AWSCURRENT"],
        )["VersionId"]
    )


def test_rotating_away_from_a_malformed_value_completes(
    store: SecretStore,
    webhook_secret: str,
    driver: LocalRotationDriver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Rotation is how a malformed secret gets a good value again. finishSecret promotes
    the new value, then read AWSPREVIOUS (the malformed one) with parse_value, which
    raised SecretValueError on every retry: the rotation was reported failed with
    "nothing was stored" although the new value was current, AWSPENDING stayed on it,
    and the rotator's tidy-up never ran. An unparsable previous version is now nothing
    to tidy, logged by version id and never by value."""
    name = spec("webhook-signing-secret").secret_name
    malformed = _paste_malformed_webhook_secret(store)
    try:
        result = driver.rotate("webhook-signing-secret")
    except RotationFailed as failed:
        now_current = store.describe(name).version_with("AWSCURRENT")
        pytest.fail(f"{failed} (AWSCURRENT is now {now_current}, the new version)")
    assert result.attempts["finishSecret"] == 1
    assert stages(store, "webhook-signing-secret")[result.version_id] == ("AWSCURRENT",)
    assert str(current_value(store, "webhook-signing-secret")["secret"]).startswith("whsec_")
    # A routine rotation keeps AWSPREVIOUS where it is; the log names it by id, not value.
    assert stages(store, "webhook-signing-secret")[malformed] == ("AWSPREVIOUS",)
    logged = raw_log_text(caplog)
    assert malformed in logged
    assert "pasted-without-json" not in logged


def test_an_emergency_away_from_a_malformed_value_still_drops_previous(
    store: SecretStore, webhook_secret: str, driver: LocalRotationDriver
) -> None:
    """The other side of an unparsable AWSPREVIOUS: there is nothing in it to retire,
    but an emergency still takes the label away (consumers accept AWSPREVIOUS) and
    clears its tag, instead of stopping at the value it cannot read."""
    name = spec("webhook-signing-secret").secret_name
    malformed = _paste_malformed_webhook_secret(store)
    result = driver.rotate("webhook-signing-secret", emergency=True)
    now = stages(store, "webhook-signing-secret")
    assert now[result.version_id] == ("AWSCURRENT",)
    assert "AWSPREVIOUS" not in now.get(malformed, ())
    assert not any("AWSPREVIOUS" in labels for labels in now.values())
    assert EMERGENCY_TAG not in store.describe(name).tags


def _issue() -> str:
    return issue_access_token(uuid.uuid4(), "user", keys=jwt_keys()).token


def test_a_routine_rotation_soon_after_another_refuses_no_unexpired_token(
    store: SecretStore, jwt_secret: None, driver: LocalRotationDriver
) -> None:
    """Only AWSCURRENT and AWSPREVIOUS verify, and nothing kept a routine rotation from
    running while AWSPREVIOUS still signs live tokens (IAM refuses inside its grace
    window; JWT had no such guard). Two routine rotations inside the 15-minute access
    token lifetime (a scheduled one and an on-call `babyshield rotate --all`, say)
    refused every token signed before the first. The second is now refused, before
    anything is stored, and the token still verifies."""
    token = _issue()
    first = driver.rotate(JWT)
    verify_access_token(token, keys=jwt_keys())  # the overlap works once

    with pytest.raises(RotationFailed) as failed:
        driver.rotate(JWT)
    assert failed.value.step == "createSecret"
    assert isinstance(failed.value.cause, PreviousKeyStillLive)
    # A retry seconds later meets the same refusal: the local driver stops at once.
    assert failed.value.attempts == 1
    assert not failed.value.left_pending
    assert "rotate as an emergency" in str(failed.value.cause)
    assert store.describe(spec(JWT).secret_name).version_with("AWSCURRENT") == first.version_id
    assert not any("AWSPENDING" in labels for labels in stages(store, JWT).values())
    try:
        verify_access_token(token, keys=jwt_keys())
    except TokenRejected as rejected:
        pytest.fail(f"an unexpired token was refused after two routine rotations: {rejected}")


def test_an_emergency_right_after_a_routine_rotation_goes_through(
    store: SecretStore, jwt_secret: None, driver: LocalRotationDriver
) -> None:
    """The other side of the guard: a leak cannot wait for old tokens to expire. An
    emergency straight after a routine rotation runs, and refuses what the old keys
    signed."""
    before = _issue()
    driver.rotate(JWT)
    between = _issue()
    result = driver.rotate(JWT, emergency=True)
    now = stages(store, JWT)
    assert now[result.version_id] == ("AWSCURRENT",)
    assert not any("AWSPREVIOUS" in labels for labels in now.values())
    for old in (before, between):
        with pytest.raises(TokenRejected):
            verify_access_token(old, keys=jwt_keys())
    verify_access_token(_issue(), keys=jwt_keys())


def test_a_routine_rotation_once_the_previous_keys_tokens_expired_goes_through(
    store: SecretStore, jwt_secret: None, driver: LocalRotationDriver
) -> None:
    """The guard's window ends: once the current key is older than the token lifetime,
    the clock leeway and the key cache, no token of the previous key can still be
    live, and a routine rotation runs."""
    from functions.shared.settings import get_settings

    driver.rotate(JWT)
    settings = get_settings()
    window = (
        settings.access_token_ttl_seconds
        + settings.jwt_leeway_seconds
        + settings.secret_cache_seconds
    )
    just_inside = datetime.now(UTC) + timedelta(seconds=window - 5)
    with pytest.raises(RotationFailed):
        jwt_driver(store, JwtKeyRotator(now=lambda: just_inside)).rotate(JWT)
    later = datetime.now(UTC) + timedelta(seconds=window + 2)
    signed_by_current = _issue()
    result = jwt_driver(store, JwtKeyRotator(now=lambda: later)).rotate(JWT)
    assert stages(store, JWT)[result.version_id] == ("AWSCURRENT",)
    verify_access_token(signed_by_current, keys=jwt_keys())


def test_the_cli_names_the_refusal_and_the_way_out(
    store: SecretStore,
    jwt_secret: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On-call reads the command's words: the refusal says why, when to retry, and that
    an emergency is not refused, as the IAM two-key refusal does."""
    from ops.cli import main
    from tests.support.cli import set_local_cli_environment

    set_local_cli_environment(monkeypatch)
    assert main(["rotate", JWT]) == 0
    capsys.readouterr()
    assert main(["rotate", JWT]) == 1
    said = capsys.readouterr()
    text = said.out + said.err
    assert "PreviousKeyStillLive" in text
    assert "retry in" in text
    assert "rotate as an emergency" in text
    assert "nothing was stored" in text
    assert main(["rotate", JWT, "--emergency"]) == 0


def test_a_malformed_previous_value_does_not_block_an_iam_emergency(
    store: SecretStore, partner_user: Any, driver: LocalRotationDriver
) -> None:
    """An operator pastes a bad value, then puts the right JSON back: the bad one is now
    AWSPREVIOUS. createSecret reads AWSPREVIOUS through parse_value to decide which key
    to keep, so every rotation of the key, the emergency one included, failed there,
    and the value that must be replaced stayed current. It now counts as holding no
    key."""
    good = current_value(store, "iam-partner-export")
    paste_then_restore(store, "iam-partner-export", "AKIA... pasted as text")
    try:
        driver.rotate("iam-partner-export", emergency=True)
    except RotationFailed as failed:
        pytest.fail(str(failed))
    assert current_value(store, "iam-partner-export")["AccessKeyId"] != good["AccessKeyId"]
    # finishSecret found the restored value (parseable) as AWSPREVIOUS: the leaked key
    # is deactivated as in any emergency.
    assert _iam_keys(partner_user.name)[good["AccessKeyId"]] == "Inactive"


def test_a_routine_iam_rotation_past_a_malformed_previous_value_keeps_its_rules(
    store: SecretStore, partner_user: Any, driver: LocalRotationDriver
) -> None:
    """The routine side: inside the grace window a malformed AWSPREVIOUS holds no key,
    so the key of the version it pushed out (no version holds it now) is deleted under
    the existing rule instead of blocking the rotation, and finishSecret, whose
    AWSPREVIOUS is then the restored parseable value, leaves the old key active for
    its overlap window."""
    driver.rotate("iam-partner-export")
    second = current_value(store, "iam-partner-export")["AccessKeyId"]
    assert _iam_keys(partner_user.name) == {partner_user.first_key_id: "Active", second: "Active"}
    paste_then_restore(store, "iam-partner-export", "AKIA... pasted as text")

    result = driver.rotate("iam-partner-export")

    third = current_value(store, "iam-partner-export")["AccessKeyId"]
    assert stages(store, "iam-partner-export")[result.version_id] == ("AWSCURRENT",)
    assert _iam_keys(partner_user.name) == {second: "Active", third: "Active"}
