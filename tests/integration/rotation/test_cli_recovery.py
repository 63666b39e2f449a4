"""`babyshield rotate` when a rotation stops halfway: Ctrl-C, a failing step, --resume.

On-call reads the command's words to decide the next one, so each case checks
what it says as well as what it leaves in Secrets Manager and the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest

from functions.shared.identity.jwt_keys import generate_jwt_secret_value
from functions.shared.inventory import spec
from functions.shared.rotation.driver import LocalRotationDriver, seed_secret
from functions.shared.rotation.store import SecretStore
from ops.cli import main
from tests.integration.rotation.conftest import PartnerUser
from tests.integration.rotation.database_fixtures import DatabaseSecrets
from tests.support.cli import set_local_cli_environment


@pytest.fixture(autouse=True)
def cli_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    set_local_cli_environment(monkeypatch)


@contextmanager
def ctrl_c_after(step: str) -> Iterator[None]:
    """Ctrl-C as soon as `step` has run, as an operator's would land between two steps."""
    real = LocalRotationDriver._invoke

    def invoke(self: LocalRotationDriver, handler: Any, item: Any, name: str, *rest: Any) -> int:
        attempts = real(self, handler, item, name, *rest)  # type: ignore[arg-type]
        if name == step:
            raise KeyboardInterrupt
        return attempts

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LocalRotationDriver, "_invoke", invoke)
        yield


def current(store: SecretStore, name: str) -> dict[str, Any]:
    found = store.read(spec(name).secret_name, stage="AWSCURRENT")
    assert found is not None
    return found.value


def pending(store: SecretStore, name: str) -> str | None:
    return store.describe(spec(name).secret_name).pending_elsewhere()


def test_resume_with_nothing_pending_starts_no_rotation(
    store: SecretStore, webhook_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = store.describe(spec("webhook-signing-secret").secret_name).stages
    assert main(["rotate", "webhook-signing-secret", "--resume"]) == 1
    assert "nothing to resume" in capsys.readouterr().out
    assert store.describe(spec("webhook-signing-secret").secret_name).stages == before


def test_rerunning_an_interrupted_emergency_names_the_command_that_finishes_it(
    store: SecretStore, webhook_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an emergency rotation interrupted with its new value stored
    name = "webhook-signing-secret"
    with ctrl_c_after("setSecret"):
        assert main(["rotate", name, "--emergency"]) == 130
    capsys.readouterr()
    # When on-call reruns it, as a first reflex: refused, with the command that finishes it
    assert main(["rotate", name, "--emergency"]) == 1
    out = capsys.readouterr().out
    assert f"babyshield rotate {name} --resume" in out
    assert f"{name}: {name}:" not in out  # the line names the secret once


def test_an_interruption_after_the_promotion_advises_resume_not_cancel(
    store: SecretStore, webhook_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an emergency interrupted inside finishSecret, after its promotion
    from functions.shared.rotation import protocol

    name = "webhook-signing-secret"

    def interrupted(ctx: Any) -> Any:
        raise KeyboardInterrupt

    # The webhook secret's steps read AWSPREVIOUS only in finishSecret, after promoting
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(protocol.StepContext, "previous", interrupted)
        assert main(["rotate", name, "--emergency"]) == 130
    err = capsys.readouterr().err
    # Then the advice is to finish it: a cancel is refused for a promoted version
    assert f"babyshield rotate {name} --resume" in err
    assert "--cancel" not in err
    assert main(["rotate", name, "--resume"]) == 0
    assert store.describe(spec(name).secret_name).unfinished_rotation() is None


def test_resume_with_nothing_left_says_so_once_and_what_starts_anew(
    store: SecretStore, webhook_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "webhook-signing-secret"
    assert main(["rotate", name, "--resume"]) == 1
    out = capsys.readouterr().out
    assert f"{name}: {name}:" not in out
    assert f"`babyshield rotate {name}` starts a new rotation" in out


def test_ctrl_c_says_what_is_left_and_secrets_shows_it_until_resumed(
    store: SecretStore, webhook_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a rotation interrupted after its new value was stored
    with ctrl_c_after("setSecret"):
        assert main(["rotate", "webhook-signing-secret"]) == 130
    left = pending(store, "webhook-signing-secret")
    assert left is not None
    err = capsys.readouterr().err
    assert f"webhook-signing-secret: INTERRUPTED; version {left} left AWSPENDING" in err
    assert "babyshield rotate webhook-signing-secret --resume" in err
    # Then `secrets` shows the pending version in its table and its JSON
    assert main(["secrets"]) == 0
    out = capsys.readouterr().out
    assert left in out
    assert "rotation pending for webhook-signing-secret" in out
    assert main(["secrets", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["webhook-signing-secret"]["pending_version"] == left
    # And --resume finishes that same version
    assert main(["rotate", "webhook-signing-secret", "--resume"]) == 0
    version = store.describe(spec("webhook-signing-secret").secret_name).version_with("AWSCURRENT")
    assert version == left
    assert current(store, "webhook-signing-secret")["secret"] != webhook_secret


def test_a_resumed_emergency_finishes_as_one_and_says_so(
    store: SecretStore, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_secret(store, spec("jwt-signing-key"), json.loads(generate_jwt_secret_value()))
    with ctrl_c_after("createSecret"):
        assert main(["rotate", "jwt-signing-key", "--emergency"]) == 130
    capsys.readouterr()
    assert main(["rotate", "jwt-signing-key", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "resumed as an emergency" in out
    # The emergency retired the old key: nothing keeps AWSPREVIOUS
    stages = store.describe(spec("jwt-signing-key").secret_name).stages
    assert not any("AWSPREVIOUS" in labels for labels in stages.values())


def test_a_failed_create_says_nothing_was_stored(
    store: SecretStore, partner_user: PartnerUser, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the partner user is gone, so no new access key can be made
    iam = boto3.client("iam")
    iam.delete_access_key(UserName=partner_user.name, AccessKeyId=partner_user.first_key_id)
    iam.delete_user(UserName=partner_user.name)
    assert main(["rotate", "iam-partner-export", "--json"]) == 1
    [result] = json.loads(capsys.readouterr().out)
    assert result["version_id"] is None
    assert "nothing was stored" in result["detail"]
    assert "--resume" not in result["detail"]
    assert pending(store, "iam-partner-export") is None


def test_a_tier_rotates_while_an_admin_rotation_is_stopped_after_its_set_step(
    db_secrets: DatabaseSecrets, store: SecretStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """From the admin's setSecret to its finishSecret the database holds the admin's
    AWSPENDING password: a rotation Ctrl-C'd there, or one running beside a tier's (a
    first deploy starts every schedule at once). A tier's rotation, which logs in as
    the admin, goes through with that value instead of failing on AWSCURRENT."""
    with ctrl_c_after("setSecret"):
        assert main(["rotate", "db-admin"]) == 130
    err = capsys.readouterr().err
    assert "db-admin --resume" in err
    assert "--cancel" not in err  # refused for the admin: the database may hold the new password
    assert not db_secrets.agree("db-admin")

    assert main(["rotate", "db-app"]) == 0
    assert db_secrets.agree("db-app")
    # And the admin's rotation is still there to finish
    assert main(["rotate", "db-admin", "--resume"]) == 0
    assert db_secrets.agree("db-admin")
    assert main(["rotate", "db-readonly"]) == 0
    assert db_secrets.agree("db-readonly")


def test_service_mode_is_refused_against_a_local_endpoint(
    store: SecretStore, webhook_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = store.describe(spec("webhook-signing-secret").secret_name).stages
    assert main(["rotate", "webhook-signing-secret", "--mode", "service"]) == 1
    err = capsys.readouterr().err
    assert "--mode service needs Secrets Manager itself" in err
    # It names where the command goes, which `make run` may have chosen, not the user
    from functions.shared.settings import get_settings

    assert f"this command goes to {get_settings().aws_endpoint_url}" in err
    assert store.describe(spec("webhook-signing-secret").secret_name).stages == before


def _stopped_after_promotion(store: SecretStore, name: str) -> str:
    """An emergency whose finishSecret failed right after the promotion (the service
    unreachable for the retirement): current already, and not finished."""
    from functions.shared.rotation import protocol
    from functions.shared.rotation.driver import RotationFailed

    def unreachable(ctx: Any) -> Any:
        raise ConnectionError("the service is unreachable for the retirement")

    # The webhook secret's steps read AWSPREVIOUS only in finishSecret, after promoting
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(protocol.StepContext, "previous", unreachable)
        with pytest.raises(RotationFailed) as failed:
            LocalRotationDriver(store=store, backoff_seconds=0.0).rotate(name, emergency=True)
    assert failed.value.left_pending
    return failed.value.token


def _deployed(event: dict[str, Any], handler: Any) -> dict[str, Any]:
    """What Lambda's Invoke answers for a RequestResponse call of `handler`."""
    from functions.shared.rotation.driver import DriverContext

    try:
        handler(event, DriverContext(function_name="babyshield-rotate-iam"))
    except Exception as exc:  # noqa: BLE001 - Lambda reports any error in the payload
        return {"errorType": type(exc).__name__}
    return {}


def test_resume_against_aws_finishes_an_emergency_stopped_after_its_promotion(
    store: SecretStore, webhook_secret: str
) -> None:
    from functions.rotate_iam.handler import lambda_handler
    from ops.rotate import finish_via_function

    name = "webhook-signing-secret"
    token = _stopped_after_promotion(store, name)
    invoked: list[tuple[str, dict[str, Any]]] = []

    def invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
        invoked.append((function, event))
        return _deployed(event, lambda_handler)

    outcome = finish_via_function(store, spec(name), invoke)

    assert outcome.ok, outcome.detail
    assert invoked == [
        (
            "babyshield-rotate-iam",
            {
                "Step": "finishSecret",
                "SecretId": store.describe(spec(name).secret_name).arn,
                "ClientRequestToken": token,
            },
        )
    ]
    metadata = store.describe(spec(name).secret_name)
    assert metadata.unfinished_rotation() is None
    # The emergency's retirement ran: the old value is no longer AWSPREVIOUS.
    assert metadata.version_with("AWSPREVIOUS") is None


def test_resume_against_aws_refuses_a_version_never_promoted(
    store: SecretStore, webhook_secret: str
) -> None:
    from ops.console import CommandError
    from ops.rotate import finish_via_function

    name = "webhook-signing-secret"
    with ctrl_c_after("setSecret"), pytest.raises(KeyboardInterrupt):
        LocalRotationDriver(store=store, backoff_seconds=0.0).rotate(name)
    assert pending(store, name) is not None

    def never(function: str, event: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("a version before its promotion is not finished by the function")

    with pytest.raises(CommandError) as refused:
        finish_via_function(store, spec(name), never)
    assert "was never promoted" in str(refused.value)
    assert "--cancel" in str(refused.value.hint)


def test_resume_against_aws_reads_the_secret_when_the_functions_answer_is_lost(
    store: SecretStore, webhook_secret: str
) -> None:
    """The step ran but its answer timed out: the secret, not the error, says whether
    it finished; and a call that failed outright leaves it unfinished, said so."""
    from botocore.exceptions import ReadTimeoutError

    from functions.rotate_iam.handler import lambda_handler
    from ops.rotate import finish_via_function

    name = "webhook-signing-secret"
    _stopped_after_promotion(store, name)

    def refused(function: str, event: dict[str, Any]) -> dict[str, Any]:
        raise ReadTimeoutError(endpoint_url="https://lambda")

    failed = finish_via_function(store, spec(name), refused)
    assert not failed.ok
    assert "still unfinished" in failed.detail

    def ran_but_answer_lost(function: str, event: dict[str, Any]) -> dict[str, Any]:
        _deployed(event, lambda_handler)
        raise ReadTimeoutError(endpoint_url="https://lambda")

    outcome = finish_via_function(store, spec(name), ran_but_answer_lost)
    assert outcome.ok, outcome.detail
    assert store.describe(spec(name).secret_name).unfinished_rotation() is None


def test_service_rotation_names_resume_for_a_rotation_stopped_after_promotion(
    store: SecretStore, webhook_secret: str
) -> None:
    from ops.rotate import rotate_via_service

    _stopped_after_promotion(store, "webhook-signing-secret")
    outcome = rotate_via_service(
        store, spec("webhook-signing-secret"), emergency=True, wait_seconds=0.1
    )
    assert not outcome.ok
    assert "babyshield rotate webhook-signing-secret --resume" in outcome.detail


def test_the_function_invoke_call_is_lambdas_own_stubbed_as_moto_runs_no_lambda_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """moto's Invoke needs Docker to run a function, which this machine lacks: the one
    call is checked against botocore's Stubber (its request shape and an error answer).
    The client itself: one attempt (an Invoke is not idempotent), and a read timeout
    past the rotation functions' two minutes."""
    import io

    from botocore.response import StreamingBody
    from botocore.stub import Stubber

    from ops import rotate
    from ops.rotate import invoke_rotation_function

    config = rotate._lambda_client().meta.config
    assert config.retries["total_max_attempts"] == 1
    assert config.read_timeout > 120
    client = boto3.client("lambda", region_name="us-east-1")
    event = {
        "Step": "finishSecret",
        "SecretId": "arn",  # pragma: allowlist secret
        "ClientRequestToken": "t",
    }
    payload = json.dumps({"errorType": "OperationalError"}).encode()
    with Stubber(client) as stub:
        stub.add_response(
            "invoke",
            {
                "StatusCode": 200,
                "FunctionError": "Unhandled",
                "Payload": StreamingBody(io.BytesIO(payload), len(payload)),
            },
            {
                "FunctionName": "babyshield-rotate-db",
                "InvocationType": "RequestResponse",
                "Payload": json.dumps(event).encode(),
            },
        )
        monkeypatch.setattr(rotate, "_lambda_client", lambda: client)
        assert invoke_rotation_function("babyshield-rotate-db", event) == {
            "errorType": "OperationalError"
        }


@pytest.mark.parametrize("wait", ["0", "-5"])
def test_wait_must_be_positive(wait: str, aws: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rotate", "db-app", "--wait", wait]) == 2
    assert "--wait" in capsys.readouterr().err


def test_secrets_exits_non_zero_when_it_cannot_read_aws(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # No `aws` fixture: the endpoint is a closed port (tests/conftest.py).
    assert main(["secrets"]) == 1
    assert "could not read any secret" in capsys.readouterr().err


def test_ctrl_c_before_anything_was_stored_says_so(
    store: SecretStore, webhook_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*_: Any, **__: Any) -> Any:
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LocalRotationDriver, "rotate", interrupted)
        assert main(["rotate", "webhook-signing-secret"]) == 130
    assert "nothing was left pending" in capsys.readouterr().err
    assert pending(store, "webhook-signing-secret") is None


def test_a_second_local_rotation_of_the_same_secret_is_refused(
    store: SecretStore, webhook_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import fcntl

    from ops.rotate import rotation_lock_path

    before = store.describe(spec("webhook-signing-secret").secret_name).stages
    # Given another run holds the secret's lock (as one between its steps does)
    with rotation_lock_path(spec("webhook-signing-secret")).open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert main(["rotate", "webhook-signing-secret"]) == 1
    assert "another `babyshield rotate` of webhook-signing-secret is running" in (
        capsys.readouterr().out
    )
    assert store.describe(spec("webhook-signing-secret").secret_name).stages == before
    # And once it is released, the rotation runs
    assert main(["rotate", "webhook-signing-secret"]) == 0


def test_verbose_shows_each_step_and_plain_runs_do_not(
    store: SecretStore,
    webhook_secret: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POWERTOOLS_LOG_LEVEL")
    assert main(["rotate", "webhook-signing-secret"]) == 0
    assert '"step":"createSecret"' not in capsys.readouterr().err
    assert main(["rotate", "webhook-signing-secret", "--verbose"]) == 0
    err = capsys.readouterr().err
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        assert f'"step":"{step}"' in err


def test_an_emergency_does_not_promote_a_value_made_before_it(
    store: SecretStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """A routine rotation stuck since before the incident: its pending value may have
    leaked with the rest, so an emergency must not finish it."""
    name = "jwt-signing-key"
    seed_secret(store, spec(name), json.loads(generate_jwt_secret_value()))
    with ctrl_c_after("createSecret"):
        assert main(["rotate", name]) == 130
    stale = pending(store, name)
    capsys.readouterr()

    assert main(["rotate", name, "--emergency", "--resume"]) == 1
    said = capsys.readouterr()
    assert "before this emergency" in said.out + said.err
    assert pending(store, name) == stale
    # The way out it names: cancel, then a fresh emergency rotation
    assert main(["rotate", name, "--cancel"]) == 0
    assert main(["rotate", name, "--emergency"]) == 0
    assert store.read(spec(name).secret_name, stage="AWSCURRENT").version_id != stale  # type: ignore[union-attr]


def test_cancelling_a_routine_rotation_needs_no_untag(
    store: SecretStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No emergency tag, no UntagResource call: an on-call role without it can cancel."""
    from botocore.exceptions import ClientError

    name = "jwt-signing-key"
    seed_secret(store, spec(name), json.loads(generate_jwt_secret_value()))
    with ctrl_c_after("createSecret"):
        assert main(["rotate", name]) == 130

    def denied(self: SecretStore, secret_id: str) -> None:
        raise ClientError({"Error": {"Code": "AccessDeniedException"}}, "UntagResource")

    monkeypatch.setattr(SecretStore, "clear_emergency", denied)
    assert main(["rotate", name, "--cancel"]) == 0
    assert pending(store, name) is None


class _SecretsManagerRotatingInTheBackground:
    """The store's client with RotateSecret as Secrets Manager runs it: the call is
    answered, the rotation function's four steps run on the service's side, and a
    step's failure never reaches RotateSecret's caller (the service retries it later;
    moto runs no function)."""

    def __init__(self, client: Any):
        self._client = client
        self.step_errors: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def rotate_secret(self, *, SecretId: str, ClientRequestToken: str, **_: Any) -> Any:  # noqa: N803
        from functions.rotate_iam.handler import lambda_handler
        from functions.shared.rotation.driver import DriverContext

        arn = self._client.describe_secret(SecretId=SecretId)["ARN"]
        for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
            try:
                lambda_handler(
                    {"Step": step, "SecretId": arn, "ClientRequestToken": ClientRequestToken},
                    DriverContext(function_name="babyshield-rotate-iam"),
                )
            except Exception as exc:  # noqa: BLE001 - the service's side: the caller never hears
                self.step_errors.append((step, type(exc).__name__))
                break
        return {"ARN": arn, "VersionId": ClientRequestToken}


def test_service_rotation_is_not_reported_done_while_its_finish_secret_is_unfinished(
    store: SecretStore, webhook_secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """finishSecret promotes first, tidies after, and drops AWSPENDING last. With the
    tidy-up failing, the rotation is unfinished (`babyshield secrets` shows it
    pending, RotationsStuck pages, the next rotate is refused): on-call must not be
    told it rotated, and is told the way on."""
    from functions.rotate_iam.generated import GeneratedSecretRotator
    from ops.rotate import rotate_via_service

    def tidy_up_fails(self: GeneratedSecretRotator, ctx: Any, previous: Any) -> None:
        raise ConnectionError("the tidy-up after the promotion failed")

    monkeypatch.setattr(GeneratedSecretRotator, "after_promote", tidy_up_fails)
    name = "webhook-signing-secret"
    service: Any = _SecretsManagerRotatingInTheBackground(store.client)

    outcome = rotate_via_service(
        SecretStore(service, caller="test"),
        spec(name),
        emergency=False,
        wait_seconds=0.3,
        poll_seconds=0.05,
    )

    assert service.step_errors == [("finishSecret", "ConnectionError")]
    metadata = store.describe(spec(name).secret_name)
    assert metadata.unfinished_rotation() == outcome.version_id
    assert not outcome.ok
    assert "AWSPENDING" in outcome.detail
    assert f"babyshield rotate {name} --resume" in outcome.detail
