"""Rotations that meet a malformed stored value, an emergency whose RotateSecret answer
is lost, and two emergency commands for one secret at once: the real handlers and the
`babyshield rotate` code against the moto server over HTTP (with the fault proxy of
tests/support/aws_faults.py where an answer must be lost or a call refused)."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from functions.rotate_jwt.key_pair import JwtKeyRotator
from functions.shared.identity.jwt_keys import generate_jwt_secret_value
from functions.shared.identity.tokens import issue_access_token, verify_access_token
from functions.shared.inventory import spec
from functions.shared.rotation.driver import DriverContext, LocalRotationDriver, RotationFailed
from functions.shared.rotation.store import EMERGENCY_TAG, SecretMetadata, SecretStore
from ops.rotate import Outcome
from tests.integration.rotation.conftest import PartnerUser
from tests.integration.rotation.state import (
    current_value,
    jwt_driver,
    jwt_keys,
    paste_then_restore,
    stages,
)

JWT = "jwt-signing-key"
IAM = "iam-partner-export"


def _paste_as_current(store: SecretStore, name: str, bad: str) -> str:
    """An operator puts `bad` as the new AWSCURRENT (labels moved as Secrets Manager
    moves them: the old current becomes AWSPREVIOUS). Returns the bad version's id."""
    secret_id = spec(name).secret_name
    current = store.describe(secret_id).version_with("AWSCURRENT")
    version = store.client.put_secret_value(
        SecretId=secret_id, SecretString=bad, VersionStages=["PASTED"]
    )["VersionId"]
    store.promote(secret_id, version, current)
    store.remove_stage(secret_id, "PASTED", version)
    return str(version)


def _key_pair_with_algorithm_as_a_list() -> str:
    """A real key pair whose `algorithm` was written as a JSON list, as a hand-edited
    template might: valid JSON, an object, but not a key pair this code can use."""
    value: dict[str, Any] = json.loads(generate_jwt_secret_value("ES256"))
    value["algorithm"] = ["ES256"]
    return json.dumps(value)


def _iam_keys(user: str) -> dict[str, str]:
    listed = boto3.client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"]
    return {key["AccessKeyId"]: key["Status"] for key in listed}


# --- emergency through Secrets Manager: a lost or refused RotateSecret ----------------


def _emergency_with_rotate_secret(
    store: SecretStore, monkeypatch: pytest.MonkeyPatch, fault: str
) -> tuple[Outcome, set[str], SecretMetadata]:
    """`babyshield rotate jwt-signing-key --emergency` against the service, every
    RotateSecret disturbed by `fault` (tests/support/aws_faults.py); returns the
    command's outcome, the secret's versions before, and the secret after."""
    from ops.rotate import rotate_via_service
    from tests.support.aws_faults import PASS, faulty_aws_endpoint

    secret_id = spec(JWT).secret_name
    before = set(store.describe(secret_id).stages)
    with faulty_aws_endpoint(monkeypatch) as faults:
        faults.rule = lambda target, body: fault if target.endswith(".RotateSecret") else PASS
        through_proxy = SecretStore(caller="test")
        outcome = rotate_via_service(
            through_proxy, spec(JWT), emergency=True, wait_seconds=0.5, poll_seconds=0.1
        )
        assert faults.disturbed(fault), "the fault never fired"
        faults.rule = lambda target, body: PASS
        return outcome, before, through_proxy.describe(secret_id)


def test_an_emergency_whose_rotate_secret_answer_is_lost_stays_an_emergency(
    store: SecretStore, jwt_secret: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`babyshield rotate NAME --emergency` against AWS tags the secret, then calls
    RotateSecret. When the call reaches Secrets Manager but its answer is lost (the
    on-call's connection drops mid-incident), the service started the rotation with
    that token: the tag must stay, or the function finishes a routine rotation and the
    leaked key stays AWSPREVIOUS, verifying tokens until the next rotation."""
    from tests.support.aws_faults import DROP_ANSWER

    # Every RotateSecret is applied by the service; none of its answers arrives.
    outcome, before, after = _emergency_with_rotate_secret(store, monkeypatch, DROP_ANSWER)
    started = set(after.stages) - before
    assert len(started) == 1, "Secrets Manager never took the RotateSecret request"
    [token] = started
    assert after.tags.get(EMERGENCY_TAG) == token, (
        f"the service started rotation {token}, but the emergency tag is "
        f"{after.tags.get(EMERGENCY_TAG)!r}: it runs as a routine rotation "
        f"(the command said: {outcome.detail})"
    )


def test_an_emergency_whose_rotate_secret_is_refused_leaves_no_tag(
    store: SecretStore, jwt_secret: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A RotateSecret the service refused started nothing: the emergency's tag is
    removed, so it cannot turn the next routine rotation into one, and on-call reads
    the refusal."""
    from tests.support.aws_faults import FAIL

    outcome, before, after = _emergency_with_rotate_secret(store, monkeypatch, FAIL)
    assert (outcome.ok, outcome.version_id) == (False, None)
    assert outcome.detail.startswith("RotateSecret refused")
    assert set(after.stages) == before
    assert EMERGENCY_TAG not in after.tags


# --- two emergency commands for one secret at once ------------------------------------


class _SecretsManagerRunningRotations:
    """The store's botocore client with RotateSecret played as Secrets Manager plays it:
    refused while another rotation runs (AWS: "A previous rotation isn't complete"),
    otherwise accepted, and the rotation function then invoked through its four steps
    with the token (asynchronously in AWS: `before_steps` is what happens meanwhile).
    moto's own RotateSecret does neither: it runs no function and does not refuse."""

    def __init__(self, client: Any, running: threading.Event, before_steps: Any = None):
        self._client = client
        self._before_steps = before_steps
        self.running = running

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def rotate_secret(self, *, SecretId: str, ClientRequestToken: str, **_: Any) -> Any:  # noqa: N803
        from botocore.exceptions import ClientError

        from functions.rotate_iam.handler import lambda_handler

        arn = self._client.describe_secret(SecretId=SecretId)["ARN"]
        if self.running.is_set():
            raise ClientError(
                {
                    "Error": {
                        "Code": "InvalidRequestException",
                        "Message": "A previous rotation isn't complete.",
                    }
                },
                "RotateSecret",
            )
        self.running.set()
        try:
            if self._before_steps is not None:
                self._before_steps()
            for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
                lambda_handler(
                    {"Step": step, "SecretId": arn, "ClientRequestToken": ClientRequestToken},
                    DriverContext(function_name="babyshield-rotate-iam"),
                )
        finally:
            self.running.clear()
        return {"ARN": arn, "VersionId": ClientRequestToken}


class _FirstReadFrom(SecretStore):
    """A store whose first DescribeSecret answers `earlier`: a command that read the
    secret before another command tagged it."""

    def __init__(self, earlier: SecretMetadata, client: Any, *, caller: str):
        super().__init__(client, caller=caller)
        self._earlier: list[SecretMetadata] = [earlier]

    def describe(self, secret_id: str) -> SecretMetadata:
        return self._earlier.pop() if self._earlier else super().describe(secret_id)


@pytest.mark.parametrize("second_read", ["after the first's tag", "before the first's tag"])
def test_two_emergency_commands_at_once_never_report_a_routine_rotation_as_an_emergency(
    second_read: str, store: SecretStore, webhook_secret: str
) -> None:
    """Two responders run `babyshield rotate webhook-signing-secret --emergency` against
    AWS at the same moment; the second's tag and RotateSecret land after the first's
    RotateSecret was accepted and before its rotation's first step. One tag holds one
    token: a command that finds another's tag refuses before touching it; one that read
    the secret before the other's tag overwrites it, is refused by Secrets Manager and
    then removes only a tag that still names its own token. The first rotation then
    runs as an emergency (the old value retired), or as a routine one, which the first
    command reports as a failure naming the rerun, never as "old secret retired" while
    the leaked value stays AWSPREVIOUS."""
    from ops.rotate import rotate_via_service

    name = "webhook-signing-secret"
    secret_id = spec(name).secret_name
    untagged = store.describe(secret_id)
    leaked_version = untagged.version_with("AWSCURRENT")
    running = threading.Event()
    second: list[Outcome] = []

    def second_responder() -> None:
        client: Any = _SecretsManagerRunningRotations(store.client, running)
        if second_read == "before the first's tag":
            second_store: SecretStore = _FirstReadFrom(untagged, client, caller="test-second")
        else:
            second_store = SecretStore(client, caller="test-second")
        second.append(
            rotate_via_service(
                second_store, spec(name), emergency=True, wait_seconds=0.2, poll_seconds=0.05
            )
        )

    first_client: Any = _SecretsManagerRunningRotations(
        store.client, running, before_steps=second_responder
    )
    first_store = SecretStore(first_client, caller="test-first")
    outcome = rotate_via_service(
        first_store, spec(name), emergency=True, wait_seconds=5, poll_seconds=0.05
    )

    [refused] = second
    assert (refused.ok, refused.version_id) == (False, None)
    after = store.describe(secret_id)
    assert stages(store, name)[outcome.version_id or ""] == ("AWSCURRENT",)
    assert EMERGENCY_TAG not in after.tags
    if second_read == "after the first's tag":
        assert f"tag names rotation {outcome.version_id}" in refused.detail
        assert outcome.ok, outcome.detail
        assert "old secret retired" in outcome.detail
        assert after.version_with("AWSPREVIOUS") is None
    else:
        assert refused.detail.startswith("RotateSecret refused"), refused.detail
        assert after.version_with("AWSPREVIOUS") == leaked_version
        assert not outcome.ok
        assert "NOT retired" in outcome.detail
        assert f"babyshield rotate {name} --emergency" in outcome.detail


class _TagSeenLate(SecretStore):
    """A store whose next `late` DescribeSecret answers after setting the emergency tag
    do not show it yet, as an eventually consistent read may."""

    def __init__(self, client: Any, *, late: int):
        super().__init__(client, caller="test-late-tag")
        self._late = 0
        self._pending_late = late

    def mark_emergency(self, secret_id: str, token: str) -> None:
        super().mark_emergency(secret_id, token)
        self._late = self._pending_late

    def describe(self, secret_id: str) -> SecretMetadata:
        found = super().describe(secret_id)
        if self._late:
            self._late -= 1
            return replace(found, tags={k: v for k, v in found.tags.items() if k != EMERGENCY_TAG})
        return found


def test_an_emergency_whose_tag_is_read_back_late_still_runs(
    store: SecretStore, webhook_secret: str
) -> None:
    """A read right after TagResource that does not show the tag yet is no other
    command's doing: the command reads again before it concludes, and the emergency
    runs (the old value retired)."""
    from ops.rotate import rotate_via_service

    name = "webhook-signing-secret"
    client: Any = _SecretsManagerRunningRotations(store.client, threading.Event())
    outcome = rotate_via_service(
        _TagSeenLate(client, late=2), spec(name), emergency=True, wait_seconds=5, poll_seconds=0.05
    )
    assert outcome.ok, outcome.detail
    assert "old secret retired" in outcome.detail
    assert store.describe(spec(name).secret_name).version_with("AWSPREVIOUS") is None


# --- a JWT secret whose value is malformed -------------------------------------------


def test_tokens_verify_after_a_routine_rotation_away_from_a_malformed_current_key(
    store: SecretStore, jwt_secret: None
) -> None:
    """Rotation is how a malformed JWT secret gets a working key again: after rotating
    away from a current value whose `algorithm` is a list, that value is AWSPREVIOUS
    and must be left out of the key ring, not fail every sign-in and token check."""
    _paste_as_current(store, JWT, _key_pair_with_algorithm_as_a_list())
    # Past the guard's window, as a scheduled rotation would be.
    later = datetime.now(UTC) + timedelta(hours=1)
    result = jwt_driver(store, JwtKeyRotator(now=lambda: later)).rotate(JWT)
    assert stages(store, JWT)[result.version_id] == ("AWSCURRENT",)
    try:
        token = issue_access_token(uuid.uuid4(), "user", keys=jwt_keys()).token
        verify_access_token(token, keys=jwt_keys())
    except Exception as exc:  # noqa: BLE001 - any failure is what this test is about
        pytest.fail(
            "after rotating to a new key, signing and verifying with it fail because "
            f"AWSPREVIOUS is malformed: {type(exc).__name__}: {exc}"
        )


def test_a_routine_jwt_rotation_is_not_blocked_by_a_malformed_previous_value(
    store: SecretStore, jwt_secret: None, driver: LocalRotationDriver
) -> None:
    """ROTATION.md: "a placeholder or malformed value signed no token" and must never
    block a rotation. An operator pastes a value whose `algorithm` is a list, then
    restores the good key: the malformed one is AWSPREVIOUS, and the routine rotation
    goes through."""
    paste_then_restore(store, JWT, _key_pair_with_algorithm_as_a_list())
    try:
        result = driver.rotate(JWT)
    except RotationFailed as failed:
        pytest.fail(f"{failed}: {failed.cause!r}")
    assert stages(store, JWT)[result.version_id] == ("AWSCURRENT",)


# --- an IAM secret whose current value is malformed ----------------------------------


def test_an_iam_emergency_replaces_a_malformed_current_value(
    store: SecretStore, partner_user: PartnerUser, driver: LocalRotationDriver
) -> None:
    """The partner-export secret's AWSCURRENT was overwritten with text that is not
    JSON (a console edit): the export is broken, and its key may have leaked. The
    emergency replaces the value (the user is read from AWSPREVIOUS), and afterwards
    only the new key is active."""
    _paste_as_current(store, IAM, "AKIA... pasted as text")
    try:
        result = driver.rotate(IAM, emergency=True)
    except RotationFailed as failed:
        pytest.fail(f"{failed}: {failed.cause!r}")
    new_key = current_value(store, IAM)["AccessKeyId"]
    assert stages(store, IAM)[result.version_id] == ("AWSCURRENT",)
    # After an emergency only the new key works: the old one is off or gone.
    active = {key for key, status in _iam_keys(partner_user.name).items() if status == "Active"}
    assert active == {new_key}


def test_an_iam_rotation_with_no_value_naming_the_user_says_what_to_do(
    store: SecretStore, partner_user: PartnerUser, driver: LocalRotationDriver
) -> None:
    """Neither AWSCURRENT nor AWSPREVIOUS parses: the rotation cannot know whose key
    to replace, stores nothing, and says which value to put back."""
    _paste_as_current(store, IAM, "pasted once")
    _paste_as_current(store, IAM, "pasted twice")
    with pytest.raises(RotationFailed) as failed:
        driver.rotate(IAM, emergency=True)
    assert '"UserName"' in str(failed.value.cause)
    assert [s for s in stages(store, IAM).values() if "AWSPENDING" in s] == []
