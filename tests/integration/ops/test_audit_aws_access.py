"""`babyshield audit`: whether the AWS-side checks run is botocore's answer (does it find
credentials?), not the names of the shell's variables; the database check runs on
DATABASE_URL alone, since it makes no AWS call against AWS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from ops.audit_checks import FAIL, SKIP
from ops.cli import main
from ops.local_server import api_handler
from tests.integration.ops.test_audit_against_planted_defects import no_database as no_database
from tests.support.postgres import MigratedDatabase
from tests.unit.ops.test_audit import serving


@pytest.fixture
def shell_without_aws_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A shell with none of the AWS variables set, no local stack recorded in its working
    directory, and no way for botocore to reach credentials beyond what a test writes
    into the returned folder: not this machine's ~/.aws, nor an instance's metadata."""
    from ops.local_state import AWS_TARGET_VARIABLES

    monkeypatch.chdir(tmp_path)
    for name in (*AWS_TARGET_VARIABLES, "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    aws_folder = tmp_path / "aws"
    aws_folder.mkdir()
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(aws_folder / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws_folder / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return aws_folder


def _report(out: str) -> dict[str, dict[str, str]]:
    # The API runs in this process and logs to the same stdout: take the report only.
    checks = json.loads(out[out.index('{\n  "checks"') :])["checks"]
    return {c["name"]: c for c in checks}


@pytest.fixture
def backdoor(migrated_db: MigratedDatabase) -> Iterator[str]:
    """A login of its own that a leaked admin password could leave behind."""
    name = "backdoor_without_aws_variables"
    role = sql.Identifier(name)
    with migrated_db.admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(migrated_db.roles.app), role))
    try:
        yield name
    finally:
        with migrated_db.admin() as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
            conn.execute(sql.SQL("DROP ROLE {}").format(role))


def test_database_url_without_aws_credentials_still_runs_the_database_check(
    shell_without_aws_variables: Path,
    migrated_db: MigratedDatabase,
    backdoor: str,
    no_database: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """RUNBOOK: "run the audit from a host in the VPC with DATABASE_URL set". The
    database check reads the catalog through DATABASE_URL and takes the production
    role names: it needs no AWS call, so it runs (and names the backdoor login) even
    where botocore finds no credentials; only the checks that call AWS are SKIP."""
    from functions.shared.db import roles

    monkeypatch.setenv("DATABASE_URL", migrated_db.admin_conninfo)
    # This database stands for production: its roles are the production role names.
    monkeypatch.setattr(roles, "PRODUCTION_ROLES", migrated_db.roles)

    with serving(api_handler()) as url:
        code = main(["audit", "--url", url, "--json"])
    checks = _report(capsys.readouterr().out)

    assert checks["database_users"]["status"] == FAIL, checks["database_users"]
    assert backdoor in checks["database_users"]["detail"]
    for name in ("secret_ages", "waf_association", "waf_logging"):
        assert checks[name]["status"] == SKIP, checks[name]
        assert checks[name]["detail"].startswith("no AWS access"), checks[name]
    assert code == 1


def test_no_credentials_anywhere_skips_the_aws_checks(
    shell_without_aws_variables: Path,
    no_database: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without credentials botocore could use and without DATABASE_URL, every AWS-side
    check says why it did not run, the database check included."""
    with serving(api_handler()) as url:
        code = main(["audit", "--url", url, "--json"])
    checks = _report(capsys.readouterr().out)

    for name in ("secret_ages", "database_users", "waf_association", "waf_logging"):
        assert checks[name]["status"] == SKIP, checks[name]
        assert checks[name]["detail"].startswith("no AWS access"), checks[name]
    assert code == 0


def test_a_default_profile_is_aws_access(
    aws: str,
    shell_without_aws_variables: Path,
    no_database: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An engineer set up with `aws configure` (a [default] profile in ~/.aws, no AWS_*
    variable) audits an account with no WebACL and none of the inventory's secrets:
    botocore reaches the account, so the AWS checks run and FAIL, and the audit exits
    1. (The profile's endpoint_url aims botocore at moto, as it would at the account.)"""
    # Not the `aws` fixture's variable: the profile names the endpoint.
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    (shell_without_aws_variables / "credentials").write_text(
        "[default]\naws_access_key_id = testing\n"
        "aws_secret_access_key = testing\n"  # pragma: allowlist secret
    )
    (shell_without_aws_variables / "config").write_text(
        f"[default]\nregion = us-east-1\nendpoint_url = {aws}\n"
    )

    with serving(api_handler()) as url:
        code = main(["audit", "--url", url, "--json"])
    checks = _report(capsys.readouterr().out)

    for name in ("secret_ages", "waf_association", "waf_logging"):
        assert checks[name]["status"] == FAIL, checks[name]
    assert code == 1
