"""`babyshield db migrate` with DATABASE_URL in the shell while a local stack runs: the
database the shell names is the one migrated, not the stack's."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ops.cli import main
from ops.local_state import (
    AWS_TARGET_VARIABLES,
    STATE_FILE,
    apply_local_environment,
    write_state,
)
from tests.support.postgres import MigratedDatabase

# Where the "stack" says its database is: a closed port, so using it cannot pass.
STACK_DATABASE = "host=127.0.0.1 port=9 user=postgres dbname=babyshield_local connect_timeout=2"


@pytest.fixture
def running_local_stack(aws: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The state file of a running `make run` (its moto server answers), and a shell
    that names no AWS account, as on-call's second terminal."""
    monkeypatch.chdir(tmp_path)
    write_state(
        {
            "api_url": "http://127.0.0.1:8080",
            "aws_endpoint_url": aws,
            "environment": {"AWS_ENDPOINT_URL": aws, "DATABASE_URL": STACK_DATABASE},
        },
        tmp_path / STATE_FILE,
    )
    for name in AWS_TARGET_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    # The command writes the stack's environment into os.environ itself; without
    # this, DATABASE_URL would point every later test at the closed port.
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_database_url_in_the_shell_wins_over_the_local_stack(
    running_local_stack: None,
    migrated_db: MigratedDatabase,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given DATABASE_URL naming an up-to-date database
    monkeypatch.setenv("DATABASE_URL", migrated_db.admin_conninfo)
    # When on-call applies migrations to it
    code = main(["db", "migrate", "--role-prefix", migrated_db.roles.prefix])
    # Then that database answered, not the stack's
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "database is up to date" in captured.out
    assert "using the local stack" not in captured.err


def test_without_database_url_db_still_uses_the_local_stack(
    running_local_stack: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["db", "migrate"]) == 1
    err = capsys.readouterr().err
    assert "using the local stack" in err
    assert "port 9 failed" in err


@pytest.mark.parametrize(
    "variable",
    ["AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"],
)
def test_a_shell_given_aws_credentials_another_way_is_never_pointed_at_the_stack(
    running_local_stack: None, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    # CloudShell, a container or a CI role: on-call's command must reach the account.
    monkeypatch.setenv(variable, "set-by-the-shell")
    assert apply_local_environment() is False
    assert os.environ.get("AWS_ENDPOINT_URL") is None


def test_a_shell_naming_no_account_uses_the_running_stack(running_local_stack: None) -> None:
    assert apply_local_environment() is True


def test_a_state_file_whose_stack_does_not_answer_says_the_command_goes_to_aws(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make run` killed: its state file stays. With a default profile in ~/.aws the
    command reaches an AWS account; the shell is told, not left to assume the stack."""
    monkeypatch.chdir(tmp_path)
    write_state(
        {"aws_endpoint_url": "http://127.0.0.1:9", "environment": {}}, tmp_path / STATE_FILE
    )
    for name in AWS_TARGET_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert apply_local_environment() is False
    assert "does not answer; this command goes to AWS" in capsys.readouterr().err
