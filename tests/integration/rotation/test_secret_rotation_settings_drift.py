"""The secret-age report notices a rotation switched off, re-scheduled or re-pointed.

CDK turns rotation on for every inventory secret, every `period_days`, with the
secret's own rotation function (cdk/secrets.py). Someone who switches it off in the
console, stretches its schedule or points it at another function leaves a secret
that looks healthy in `babyshield secrets` and in the daily run until the day it is
overdue. The report must say so at once, and the daily run count it
(RotationSettingsDrift).

The local stack (`make run`) turns rotation on with the inventory's period and no
function (functions/shared/rotation/driver.py::enable_rotation: its driver plays
Secrets Manager, and moto would invoke a function it was given): that must pass.

Against the moto server over HTTP and a private PostgreSQL database; DescribeSecret
in AWS's own shape (a ScheduleExpression, a rotation function's ARN, rotation
cancelled with its settings kept) through botocore's Stubber, since moto keeps no
ScheduleExpression and runs a rotation function it is given (which needs Docker).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from functions.shared import names
from functions.shared.identity.jwt_keys import generate_jwt_secret_value
from functions.shared.inventory import INVENTORY, spec
from functions.shared.rotation.age import publish_secret_ages, secret_age
from functions.shared.rotation.driver import seed_secret
from functions.shared.rotation.store import SecretStore
from ops.cli import main
from tests.support.cli import set_local_cli_environment
from tests.support.postgres import MigratedDatabase


@pytest.fixture
def cli_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    set_local_cli_environment(monkeypatch)


def _value(kind: str, name: str) -> dict[str, Any]:
    if kind == "jwt-signing-key":
        found: dict[str, Any] = json.loads(generate_jwt_secret_value())
        return found
    return {"kind": kind, "placeholder": name}


def _seed_every_secret(store: SecretStore, *, without_rotation: str | None = None) -> None:
    """Every inventory secret as the local stack seeds it (rotation on, the inventory's
    period); `without_rotation` is created with no rotation at all."""
    for item in INVENTORY:
        value = _value(item.kind, item.name)
        if item.name == without_rotation:
            boto3.client("secretsmanager").create_secret(
                Name=item.secret_name, SecretString=json.dumps(value)
            )
        else:
            seed_secret(store, item, value)


def _emf(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if '"_aws"' in line]


def _drift_counts(out: str) -> list[float]:
    counts = []
    for doc in _emf(out):
        if names.METRIC_ROTATION_SETTINGS_DRIFT in doc:
            value = doc[names.METRIC_ROTATION_SETTINGS_DRIFT]
            counts.append(float(value[0] if isinstance(value, list) else value))
    return counts


def test_a_secret_with_rotation_off_is_flagged_by_the_report_and_counted_daily(
    aws: str,
    store: SecretStore,
    cli_environment: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The webhook secret's rotation is off (RotationEnabled false: the console's
    "Disable automatic rotation", or a schedule that was never created). Its value is
    fresh, so the age says nothing for 90 days. The report says "rotation disabled"
    in its table and in `--json`, the others stay clean, and the daily run counts
    one secret in RotationSettingsDrift, not in SecretsOverdue: nothing is overdue."""
    item = spec("webhook-signing-secret")
    _seed_every_secret(store, without_rotation=item.name)

    assert main(["secrets", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[item.name]["rotation_problem"] == "rotation disabled", rows[item.name]
    assert rows[item.name]["overdue"] is False
    others = {name: row["rotation_problem"] for name, row in rows.items() if name != item.name}
    assert set(others.values()) == {None}, others

    assert main(["secrets"]) == 0
    table = capsys.readouterr().out
    [line] = [line for line in table.splitlines() if line.startswith(f"{item.name} ")]
    assert "rotation disabled" in line, table
    assert "RUNBOOK's 'Rotation switched off or re-scheduled'" in table

    # The daily function publishes its EMF lines (the CLI environment turns them off).
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED")
    summary = publish_secret_ages(store)
    out = capsys.readouterr().out
    assert summary["rotation_drift"] == [item.name], summary
    assert summary["overdue"] == [], summary
    assert _drift_counts(out) == [1], out


def test_a_schedule_longer_than_the_period_is_flagged_and_a_shorter_one_is_not(
    aws: str, store: SecretStore
) -> None:
    """Someone stretches the JWT key's schedule to a year (RotateSecret with
    AutomaticallyAfterDays 365): the report names both periods. The partner key set to
    rotate every 7 days rotates more often than its 60: its age stays within the
    period, and that is no problem on-call has to act on."""
    _seed_every_secret(store)
    sm = boto3.client("secretsmanager")
    jwt, iam = spec("jwt-signing-key"), spec("iam-partner-export")
    sm.rotate_secret(
        SecretId=jwt.secret_name,
        RotationRules={"AutomaticallyAfterDays": 365},
        RotateImmediately=False,
    )
    sm.rotate_secret(
        SecretId=iam.secret_name,
        RotationRules={"AutomaticallyAfterDays": 7},
        RotateImmediately=False,
    )

    assert secret_age(store, jwt).rotation_problem == "rotates every 365 days, inventory says 30"
    assert secret_age(store, iam).rotation_problem is None


def test_the_local_stack_rotation_settings_pass_before_and_after_a_rotation(
    aws: str,
    rotation_db: MigratedDatabase,
    store: SecretStore,
    cli_environment: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`make run` seeds every secret with rotation on for the inventory's period and
    no rotation function (its driver plays Secrets Manager). The report against it
    must not call every secret's rotation wrong, before or after a rotation the
    local driver played."""
    from ops.rotate import ensure_local_secrets

    ensure_local_secrets(rotation_db.admin_conninfo, rotation_db.roles)
    assert main(["secrets", "--json"]) == 0
    before = {row["name"]: row["rotation_problem"] for row in json.loads(capsys.readouterr().out)}
    assert main(["rotate", "jwt-signing-key"]) == 0, capsys.readouterr().out
    capsys.readouterr()
    assert main(["secrets", "--json"]) == 0
    after = {row["name"]: row["rotation_problem"] for row in json.loads(capsys.readouterr().out)}

    assert before == after == {item.name: None for item in INVENTORY}


# --- DescribeSecret as AWS answers it ----------------------------------------------------

ACCOUNT = "123456789012"
JWT = spec("jwt-signing-key")
SECRET_ARN = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:{JWT.secret_name}-AbCdEf"
OWN_FUNCTION = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:babyshield-rotate-jwt"
# What CDK deploys (cdk/secrets.py): the period as a rate, the secret's own function.
DEPLOYED: dict[str, Any] = {
    "RotationEnabled": True,
    "RotationLambdaARN": OWN_FUNCTION,
    "RotationRules": {"AutomaticallyAfterDays": 30, "ScheduleExpression": "rate(30 days)"},
}


def _as_deployed(**changes: Any) -> dict[str, Any]:
    return {**DEPLOYED, **changes}


@pytest.mark.parametrize(
    ("rotation", "problem"),
    [
        pytest.param(DEPLOYED, None, id="as-deployed"),
        pytest.param(
            _as_deployed(RotationRules={"ScheduleExpression": "rate(30 days)"}),
            None,
            id="before-the-first-rotation-no-days-yet",
        ),
        pytest.param(
            _as_deployed(RotationRules={"ScheduleExpression": "rate(12 hours)"}),
            None,
            id="more-often-in-hours",
        ),
        pytest.param(
            # CancelRotateSecret keeps the function and the schedule.
            _as_deployed(RotationEnabled=False),
            "rotation disabled",
            id="cancelled",
        ),
        pytest.param(
            # The days AWS computed at the last rotation are stale once the schedule
            # changes; the expression is the schedule.
            _as_deployed(
                RotationRules={"AutomaticallyAfterDays": 30, "ScheduleExpression": "rate(90 days)"}
            ),
            "rotates every 90 days, inventory says 30",
            id="rate-in-days",
        ),
        pytest.param(
            _as_deployed(RotationRules={"ScheduleExpression": "rate(1000 hours)"}),
            "rotates every 1000 hours, inventory says 30 days",
            id="rate-in-hours",
        ),
        pytest.param(
            _as_deployed(RotationRules={"ScheduleExpression": "cron(0 4 1 */3 ? *)"}),
            "rotates on cron(0 4 1 */3 ? *), inventory says every 30 days",
            id="cron",
        ),
        pytest.param(
            _as_deployed(RotationLambdaARN=OWN_FUNCTION.replace("rotate-jwt", "rotate-iam")),
            f"rotated by {OWN_FUNCTION.replace('rotate-jwt', 'rotate-iam')}, not {OWN_FUNCTION}",
            id="another-function",
        ),
        pytest.param(
            _as_deployed(RotationLambdaARN=OWN_FUNCTION.replace(ACCOUNT, "210987654321")),
            f"rotated by {OWN_FUNCTION.replace(ACCOUNT, '210987654321')}, not {OWN_FUNCTION}",
            id="same-name-another-account",
        ),
        pytest.param(
            _as_deployed(
                RotationLambdaARN=f"{OWN_FUNCTION}:1",
                RotationRules={"ScheduleExpression": "rate(60 days)"},
            ),
            f"rotates every 60 days, inventory says 30; rotated by {OWN_FUNCTION}:1, "
            f"not {OWN_FUNCTION}",
            id="pinned-version-and-longer",
        ),
    ],
)
def test_rotation_settings_as_aws_reports_them_stubbed_as_moto_keeps_no_schedule_expression(
    rotation: dict[str, Any], problem: str | None
) -> None:
    """DescribeSecret through botocore's Stubber (moto keeps no ScheduleExpression and
    invokes any rotation function it is given, which needs Docker); the version list
    is stubbed beside it only because a Stubber takes the whole client."""
    client = boto3.client("secretsmanager", region_name="us-east-1")
    version = str(uuid.uuid4())
    with Stubber(client) as stub:
        stub.add_response(
            "describe_secret",
            {
                "ARN": SECRET_ARN,
                "Name": JWT.secret_name,
                "VersionIdsToStages": {version: ["AWSCURRENT"]},
                **rotation,
            },
            {"SecretId": JWT.secret_name},
        )
        stub.add_response(
            "list_secret_version_ids",
            {"Versions": [{"VersionId": version, "CreatedDate": datetime.now(UTC)}]},
            {"SecretId": JWT.secret_name, "MaxResults": 100},
        )
        age = secret_age(SecretStore(client, caller="test"), JWT)
        stub.assert_no_pending_responses()

    assert age.rotation_problem == problem
    assert age.as_json()["rotation_problem"] == problem
    assert not age.overdue


def test_the_audit_fails_a_secret_whose_rotation_is_off(aws: str, store: SecretStore) -> None:
    """`babyshield audit`'s secret check passed every fresh secret, its rotation off
    included: the audit of a deployment must fail it and name the secret."""
    from ops.audit_aws import check_secret_ages
    from ops.audit_checks import FAIL

    _seed_every_secret(store, without_rotation="jwt-signing-key")
    [check] = list(check_secret_ages())
    assert check.status == FAIL, check
    assert "jwt-signing-key (rotation disabled)" in check.detail, check.detail
    assert "overdue" not in check.detail, check.detail
