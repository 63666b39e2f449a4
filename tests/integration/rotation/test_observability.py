"""What rotation writes to logs and metrics: names and version ids, never a value."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from functions.shared import names
from functions.shared.inventory import spec
from functions.shared.rotation.driver import LocalRotationDriver
from functions.shared.rotation.store import SecretStore
from tests.support.logs import json_log_lines, raw_log_text


def test_one_log_line_per_step_with_secret_and_version_and_no_value(
    driver: LocalRotationDriver,
    store: SecretStore,
    webhook_secret: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Protects the logs: enough to follow a rotation, nothing that is a secret."""
    caplog.set_level("INFO")
    result = driver.rotate("webhook-signing-secret")
    found = store.read(spec("webhook-signing-secret").secret_name, stage="AWSCURRENT")
    assert found is not None
    lines = json_log_lines(caplog)
    steps = [line for line in lines if line.get("message") == "rotation step"]
    assert [line["step"] for line in steps] == [
        "createSecret",
        "setSecret",
        "testSecret",
        "finishSecret",
    ]
    for line in steps:
        assert line["secret"] == "babyshield/webhook-signing-secret"
        assert line["version_id"] == result.version_id
        assert line["outcome"] == "completed"
    # Every value read left an audit line naming the secret, stage and caller.
    reads = [line for line in lines if line.get("audit_event") == "secret_read"]
    callers = {line["caller"] for line in reads}
    assert {"rotate_iam:setSecret", "rotate_iam:testSecret"} <= callers
    assert callers <= {
        f"rotate_iam:{step}" for step in ("createSecret", "setSecret", "testSecret", "finishSecret")
    } | {"test"}
    assert {line["secret"] for line in reads} == {"babyshield/webhook-signing-secret"}
    text = raw_log_text(caplog)
    assert webhook_secret not in text
    assert str(found.value["secret"]) not in text


def test_a_step_that_fails_reading_the_secret_is_counted_and_logged(
    store: SecretStore,
    webhook_secret: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Protects the RotationFailures alarm and the RUNBOOK's query for a failed step: a
    step whose first read of the secret (DescribeSecret) fails, as when Secrets Manager
    throttles, the role loses the permission or the VPC endpoint times out, is counted
    and logged as a failed step like any other, under the SecretId and token its event
    named, since the secret's own name could not be read."""
    from functions.rotate_iam.handler import lambda_handler
    from functions.shared.rotation.driver import DriverContext
    from tests.support.aws_faults import FAIL, PASS, faulty_aws_endpoint
    from tests.support.logs import emf_metrics

    caplog.set_level("INFO")
    arn = store.describe(spec("webhook-signing-secret").secret_name).arn
    token = str(uuid.uuid4())
    event = {"Step": "createSecret", "SecretId": arn, "ClientRequestToken": token}
    capsys.readouterr()
    with faulty_aws_endpoint(monkeypatch) as faults:
        faults.rule = lambda target, body: FAIL if target.endswith(".DescribeSecret") else PASS
        with pytest.raises(Exception):  # noqa: B017, PT011 - any error: the step failed
            lambda_handler(event, DriverContext(function_name="babyshield-rotate-iam"))
        assert faults.disturbed(FAIL)
    counted = emf_metrics(capsys.readouterr().out)
    assert counted.get(names.METRIC_ROTATION_FAILURES, 0) == 1, counted
    [failed] = [
        line for line in json_log_lines(caplog) if line.get("message") == "rotation step failed"
    ]
    assert (failed["secret"], failed["version_id"], failed["step"]) == (arn, token, "createSecret")


def test_secret_age_metric_has_one_datapoint_per_secret(
    store: SecretStore, webhook_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Protects the dashboard's ages and the overdue alarm: one dimension per secret,
    missing ones skipped, and one undimensioned count of what is overdue."""
    from functions.shared.rotation.age import publish_secret_ages

    summary = publish_secret_ages(store)
    documents = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line
    ]
    datapoints = {
        doc["secret"]: doc[names.METRIC_SECRET_AGE_DAYS]
        for doc in documents
        if names.METRIC_SECRET_AGE_DAYS in doc
    }
    # Only the webhook secret exists here; the others are reported overdue, not measured.
    assert list(datapoints) == ["webhook-signing-secret"]
    assert 0 <= only_value(datapoints["webhook-signing-secret"]) < 0.01
    assert "webhook-signing-secret" not in summary["overdue"]
    assert "db-app" in summary["overdue"]
    # The count the alarm watches: every secret it could not age (five here), under
    # the service dimension alone, so one alarm covers the inventory.
    counts = [doc for doc in documents if names.METRIC_SECRETS_OVERDUE in doc]
    assert len(counts) == 1
    assert only_value(counts[0][names.METRIC_SECRETS_OVERDUE]) == len(summary["overdue"]) == 5
    assert "secret" not in counts[0]
    [directive] = counts[0]["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == names.METRICS_NAMESPACE
    assert directive["Dimensions"] == [["service"]]


def only_value(value: Any) -> float:
    """An EMF value: a list when the metric was added more than once, here always once."""
    if isinstance(value, list):
        [value] = value
    return float(value)


def test_the_scheduled_secret_age_function_reports_overdue_secrets(
    store: SecretStore, webhook_secret: str
) -> None:
    """Protects the handler path CDK schedules: functions.secret_age.handler.lambda_handler."""
    from functions.secret_age.handler import lambda_handler
    from functions.shared.rotation.driver import DriverContext

    summary = lambda_handler({}, DriverContext(function_name="babyshield-secret-age"))
    assert summary["secrets"] == 6
    assert "webhook-signing-secret" not in summary["overdue"]
    assert "jwt-signing-key" in summary["overdue"]
