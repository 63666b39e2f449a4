"""A shell that names an AWS account while `make run` runs in the checkout: the command
goes to AWS, as it must, and says that the running stack is not the one it uses.

Found following the RUNBOOK: on-call exports the stack's placeholder credentials for
the aws CLI (`AWS_ACCESS_KEY_ID=testing`), and every `babyshield` command then failed
with "cannot reach AWS ... start the local stack with `make run`" beside a running one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.cli import main
from ops.local_state import AWS_TARGET_VARIABLES, STATE_FILE, apply_local_environment, write_state

# Where "AWS" answers in these tests: a closed loopback port, so nothing leaves the machine.
CLOSED = "http://127.0.0.1:9"


@pytest.fixture
def running_local_stack(aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The state file of a running `make run` (its moto server answers)."""
    monkeypatch.chdir(tmp_path)
    write_state(
        {
            "api_url": "http://127.0.0.1:8080",
            "aws_endpoint_url": aws,
            "environment": {"AWS_ENDPOINT_URL": aws},
        },
        tmp_path / STATE_FILE,
    )
    for name in AWS_TARGET_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    saved = dict(os.environ)
    yield aws
    os.environ.clear()
    os.environ.update(saved)


def test_exported_placeholder_credentials_say_the_stack_is_not_used(
    running_local_stack: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the RUNBOOK's placeholder credentials exported, not prefixed to `aws`
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")  # pragma: allowlist secret
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    for service in ("SSM", "DYNAMODB", "WAFV2"):
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", CLOSED)
    # When on-call lists the blocks
    code = main(["waf", "list"])
    # Then it went to "AWS", and said why the running stack was passed over
    err = capsys.readouterr().err
    assert code == 1
    assert f"a local stack runs at {running_local_stack}" in err
    assert "AWS_ACCESS_KEY_ID in the shell sends this command to AWS; unset it" in err
    assert "using the local stack" not in err


def test_every_variable_that_aims_at_aws_is_named(
    running_local_stack: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "prod")
    monkeypatch.setenv("AWS_ENDPOINT_URL", CLOSED)
    assert apply_local_environment() is False
    assert "AWS_ENDPOINT_URL, AWS_PROFILE in the shell" in capsys.readouterr().err
    assert os.environ["AWS_ENDPOINT_URL"] == CLOSED


def test_no_note_without_a_running_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # An on-call shell in AWS with no stack here hears nothing about one
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_PROFILE", "prod")
    assert apply_local_environment() is False
    assert capsys.readouterr().err == ""
