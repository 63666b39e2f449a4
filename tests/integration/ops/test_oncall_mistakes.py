"""`babyshield` as a new user or on-call types it: against `make run` from a second
terminal, or with no stack running and no AWS credentials (an expired `aws sso login`),
getting things wrong the way one does at 3 a.m. Each command still names the reader
of every secret it reads, fails with one line naming the cause and what to do next,
and exits as the RUNBOOK's exit-code rule says.

Real parts: the local stack as the tests start it (tests/support/local_stack.py: moto
over HTTP, PostgreSQL, the API behind the local edge), the moto server alone, and
`babyshield` in a fresh process (the stack's .babyshield/local.json in its folder, or
no stack at all) or through ops.cli.main.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from functions.shared import names
from functions.shared.settings import get_settings
from ops.cli import main
from tests.support.local_stack import running_stack
from tests.support.logs import json_log_lines

ROOT = Path(__file__).resolve().parents[3]

# Lines of stderr that are the command's own: its error and next step, the local
# stack notice, JSON log lines (warnings, errors, audit lines).
OWN_STDERR = ("error:", "  next:", "(", "{")


def fresh_shell(cwd: Path, **environment: str) -> dict[str, str]:
    """A shell with nothing aimed at AWS and no credentials anywhere: the README's
    second terminal (the CLI finds the stack through .babyshield/local.json), or, with
    no stack running, an on-call shell whose `aws sso login` expired."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "LOGNAME": "alice",
        "PYTHONPATH": str(ROOT),
        "AWS_SHARED_CREDENTIALS_FILE": str(cwd / "no-credentials"),
        "AWS_CONFIG_FILE": str(cwd / "no-config"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
        **environment,
    }


def babyshield(*args: str, cwd: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args],
        cwd=cwd,
        env=fresh_shell(cwd, **environment),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def secret_reads(stderr: str) -> list[dict[str, Any]]:
    reads = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("audit_event") == "secret_read":
                reads.append(record)
    return reads


def noise(stderr: str) -> list[str]:
    """What stderr carries beyond the command's own lines (a library's, a traceback)."""
    return [
        line for line in stderr.splitlines() if line.strip() and not line.startswith(OWN_STDERR)
    ]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("error:", "  next:"))]


@pytest.fixture
def stack(pg_cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """`make run` in `tmp_path`; yields the folder the second terminal works in."""
    monkeypatch.chdir(tmp_path)
    with running_stack(pg_cluster):
        yield tmp_path


@pytest.fixture
def shell_without_stack(aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """ops.cli.main in this process, as `alice`, with AWS at the moto server and no
    local stack; the environment a command changes is put back afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOGNAME", "alice")
    saved = dict(os.environ)
    yield aws
    os.environ.clear()
    os.environ.update(saved)
    get_settings.cache_clear()


# --- the secret-read audit trail ------------------------------------------------------


def test_secrets_api_keys_audits_its_secret_read_as_the_person_who_ran_it(stack: Path) -> None:
    """RUNBOOK "A secret leaked", step 5: every value read by `babyshield rotate`,
    `secrets --api-keys`, `audit` and `webhook send` writes a `secret_read` line naming
    `babyshield-cli:<login>` (or `babyshield-audit`) as the reader, so an investigation
    can tell a person's read from a function's.

    `secrets --api-keys` reads the db-readonly secret through the read-only tier's pool,
    the code the API uses (functions/shared/db/credentials.py), which names a function
    as the reader: run by `alice`, its line names her, not the settings' default
    function name `local`."""
    result = babyshield("secrets", "--api-keys", cwd=stack)

    assert result.returncode == 0, result.stderr
    assert "api-key/" in result.stdout
    reads = secret_reads(result.stderr)
    assert reads, f"no secret_read line at all: {result.stderr!r}"
    callers = {read["secret"]: read["caller"] for read in reads}
    assert set(callers.values()) == {"babyshield-cli:alice"}, callers


def test_db_migrate_audits_its_admin_secret_read_as_the_person_who_ran_it(
    shell_without_stack: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`babyshield db migrate` with no DATABASE_URL reads the db-admin secret through the
    same code as the migrate function; its read is alice's. A function's read in the
    same process afterwards still names the function: the command puts the reader back."""
    # Given the db-admin secret, naming a database that does not answer
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("BABYSHIELD_ENV", "local")
    admin_secret = names.secret_name("db-admin")
    boto3.client("secretsmanager", endpoint_url=shell_without_stack).create_secret(
        Name=admin_secret,
        SecretString=json.dumps(
            {
                "host": "127.0.0.1",
                "port": 9,
                "username": "migrator",
                "password": "unused-here",  # pragma: allowlist secret
            }
        ),
    )

    # When alice applies the migrations
    code = main(["db", "migrate"])

    # Then it read the secret as hers, and failed at the connection only
    err = capsys.readouterr().err
    assert code == 1
    assert "cannot connect to the database" in err
    assert [(r["secret"], r["caller"]) for r in secret_reads(err)] == [
        (admin_secret, "babyshield-cli:alice")
    ]

    # And a function's read afterwards names the function
    from functions.shared.db.credentials import fetch_secret_string

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "babyshield-migrate")
    get_settings.cache_clear()
    caplog.clear()
    fetch_secret_string(admin_secret, False)
    reads = [line for line in json_log_lines(caplog) if line.get("audit_event") == "secret_read"]
    assert [read["caller"] for read in reads] == ["babyshield-migrate"]


# --- with no stack running and no AWS credentials ------------------------------------


def test_secrets_api_keys_without_stack_or_credentials_says_what_plain_secrets_says(
    tmp_path: Path,
) -> None:
    """Before `make run` (or after it stopped), in a shell with no AWS credentials,
    `secrets --api-keys` fails as `secrets` does: `could not read any secret
    (NoCredentialsError)`, next: check AWS credentials or start the local stack. It
    does not try the database, whose login is one of the secrets it could not read: no
    psycopg_pool retry lines, no warning, no error blaming the database."""
    plain = babyshield("secrets", cwd=tmp_path)
    result = babyshield("secrets", "--api-keys", cwd=tmp_path)

    assert result.returncode == plain.returncode == 1
    assert noise(result.stderr) == [], result.stderr
    assert result.stderr == plain.stderr
    error = "\n".join(error_lines(result.stderr))
    assert "NoCredentialsError" in error
    assert "make run" in error


def test_secrets_api_keys_with_the_database_down_shows_no_pool_retry_lines(
    aws: str, tmp_path: Path
) -> None:
    """Secrets readable, the database not answering: the command's error says the
    database is unavailable, and psycopg_pool's own retry lines (`error connecting in
    'babyshield-readonly': ...`, one more after the error) stay out of stderr."""
    boto3.client("secretsmanager", endpoint_url=aws).create_secret(
        Name=names.secret_name("db-app"), SecretString="{}"
    )
    closed = "host=127.0.0.1 port=9 user=nobody dbname=nothing connect_timeout=1"

    result = babyshield(
        "secrets",
        "--api-keys",
        cwd=tmp_path,
        AWS_ENDPOINT_URL=aws,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # pragma: allowlist secret
        BABYSHIELD_ENV="local",
        DATABASE_READONLY_URL=closed,
        DB_POOL_TIMEOUT_SECONDS="1",
    )

    assert result.returncode == 1
    assert noise(result.stderr) == [], result.stderr
    assert "the database is unavailable" in "\n".join(error_lines(result.stderr))


def test_secrets_api_keys_leaves_no_pool_retrying_after_its_answer(
    shell_without_stack: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The pool's threads would go on retrying, and logging, after the command printed
    its error (the line after it, above): the command closes the pool it opened, and
    while it runs the pool's lines below ERROR are dropped."""
    boto3.client("secretsmanager", endpoint_url=shell_without_stack).create_secret(
        Name=names.secret_name("db-app"), SecretString="{}"
    )
    monkeypatch.setenv("BABYSHIELD_ENV", "local")
    monkeypatch.setenv(
        "DATABASE_READONLY_URL",
        "host=127.0.0.1 port=9 user=nobody dbname=nothing connect_timeout=1",
    )
    monkeypatch.setenv("DB_POOL_TIMEOUT_SECONDS", "1")
    monkeypatch.delenv("BABYSHIELD_DEBUG", raising=False)

    code = main(["secrets", "--api-keys"])

    assert code == 1
    assert "the database is unavailable" in capsys.readouterr().err
    assert [r.getMessage() for r in caplog.records if r.name == "psycopg.pool"] == []
    retrying = [t.name for t in threading.enumerate() if t.name.startswith("babyshield-")]
    assert retrying == []


@pytest.mark.parametrize("args", [("db-app",), ("--all", "--emergency")])
def test_rotate_without_stack_or_credentials_says_what_to_do_next_once(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    """RUNBOOK (intro): every command "exits non-zero on failure with a line saying
    what to do next". Without credentials `rotate` says so once, before any secret, with
    the next step `waf list` gives in the same shell (`no AWS credentials found`, next:
    set AWS_PROFILE or run `aws sso login`), not one `FAILED NoCredentialsError` line
    per secret and no next step."""
    waf = babyshield("waf", "list", cwd=tmp_path)
    result = babyshield("rotate", *args, cwd=tmp_path)

    assert result.returncode == 1
    assert noise(result.stderr) == [], result.stderr
    assert "FAILED" not in result.stdout
    assert error_lines(result.stderr) == error_lines(waf.stderr)
    assert any("aws sso login" in line for line in error_lines(result.stderr))


def test_webhook_send_without_stack_or_credentials_names_the_cause(tmp_path: Path) -> None:
    """`webhook send` with no stack running: the error names why the secret could not
    be read (NoCredentialsError) and what to do, and asks no `export` of the stack's
    endpoint, which the command finds itself once `make run` runs."""
    result = babyshield("webhook", "send", cwd=tmp_path)

    assert result.returncode == 1
    assert noise(result.stderr) == [], result.stderr
    error = "\n".join(error_lines(result.stderr))
    assert "NoCredentialsError" in error
    assert "make run" in error
    assert "AWS_PROFILE" in error
    assert "export" not in error


# --- exit codes the RUNBOOK promises ---------------------------------------------------


@pytest.mark.parametrize("content", [None, "{not json"])
def test_webhook_send_with_an_unreadable_file_is_refused_as_a_usage_error(
    content: str | None, tmp_path: Path
) -> None:
    """RUNBOOK (intro): exit 2 "when it refused its arguments and tried nothing (a typo
    in an address, `--wait -5`, a missing `--reason`)", 1 when what it tried failed, so
    a script can tell the two apart. `webhook send --file evnet.json` (a typo), or a
    file that is not JSON, reads no secret and sends nothing: exit 2, as a malformed
    --url or --secret in the same command."""
    event = tmp_path / "evnet.json"
    if content is not None:
        event.write_text(content)
    secret = "whsec_" + "a" * 32  # pragma: allowlist secret
    result = babyshield(
        "webhook",
        "send",
        "--url",
        "http://127.0.0.1:9/webhooks/recalls",
        "--secret",
        secret,
        "--file",
        str(event),
        cwd=tmp_path,
    )

    assert noise(result.stderr) == [], result.stderr
    assert "cannot read an event" in result.stderr
    assert result.returncode == 2, result.stderr
