"""`babyshield audit`'s database check when a catalog query fails: a FAIL for that
check, and every other result still reported, not one "unexpected failure" line."""

from __future__ import annotations

import json

import pytest

from functions.shared.inventory import spec
from functions.shared.rotation.driver import seed_secret
from functions.shared.rotation.store import SecretStore
from ops.audit import AWS_CHECK_NAMES, run_aws_checks
from ops.audit_checks import FAIL, PASS
from ops.cli import main
from ops.local_server import api_handler
from tests.support.postgres import MigratedDatabase
from tests.unit.ops.test_audit import serving


@pytest.fixture
def secret_names_missing_roles(
    aws: str, migrated_db: MigratedDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read-only secret names a login of a role prefix this database lacks (a
    deployment whose roles were renamed or never created), and DATABASE_URL reaches it."""
    monkeypatch.setenv("BABYSHIELD_ENV", "local")
    monkeypatch.setenv("DATABASE_URL", migrated_db.admin_conninfo)
    seed_secret(
        SecretStore(caller="test"),
        spec("db-readonly"),
        {"engine": "postgres", "username": "nosuchprefix_readonly_a", "password": "x" * 32},
    )


def test_a_failing_catalog_query_fails_its_check_and_keeps_the_others(
    secret_names_missing_roles: None,
) -> None:
    results = {check.name: check for check in run_aws_checks()}
    assert set(results) == set(AWS_CHECK_NAMES)
    assert results["database_users"].status == FAIL
    assert "nosuchprefix_readonly" in results["database_users"].detail


def test_the_audit_command_reports_it_and_exits_one(
    secret_names_missing_roles: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # The AWS checks run because the shell names an endpoint (the `aws` fixture's).
    with serving(api_handler()) as url:
        code = main(["audit", "--url", url, "--json"])
    # The API runs in this process and logs to the same stdout: take the report only.
    out = capsys.readouterr().out
    checks = {c["name"]: c for c in json.loads(out[out.index('{\n  "checks"') :])["checks"]}
    assert code == 1
    assert checks["database_users"]["status"] == FAIL
    assert checks["security_headers"]["status"] == PASS
