"""`babyshield audit`'s database check when a catalog query fails: a FAIL for that
check, and every other result still reported, not one "unexpected failure" line."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest

from functions.shared.inventory import spec
from functions.shared.rotation.driver import seed_secret
from functions.shared.rotation.store import SecretStore
from ops.audit import AWS_CHECK_NAMES, run_aws_checks
from ops.audit_aws import check_database_users
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


@pytest.fixture
def aimed_at_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A shell aimed at an AWS account: no endpoint, and any secret value read fails
    the test (it would raise the unexpected-secret-read alert in a deployment)."""
    from functions.shared.settings import get_settings

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)

    def no_value_read(*args: object, **kwargs: object) -> None:
        raise AssertionError("the audit read a secret value from an operator's shell")

    monkeypatch.setattr(SecretStore, "read", no_value_read)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_against_aws_without_database_url_the_check_is_skipped_and_reads_no_secret(
    aimed_at_aws: None,
) -> None:
    from ops.audit_checks import SKIP

    (result,) = check_database_users()
    assert result.status == SKIP
    assert "DATABASE_URL" in result.detail


def test_against_aws_the_role_names_are_the_production_ones_not_a_secrets(
    aimed_at_aws: None,
) -> None:
    from functions.shared.db.roles import PRODUCTION_ROLES
    from ops.audit_aws import roles_in_use

    assert roles_in_use() == PRODUCTION_ROLES


def test_a_refused_database_url_is_a_fail_not_performed_without_the_password(
    aws: str, scram_db: MigratedDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RUNBOOK, "A secret leaked", step 4: after an emergency rotation of db-admin the
    audit runs with DATABASE_URL to find a login the leak made. A DATABASE_URL still
    carrying the password from before the rotation is refused by the server: the
    backdoor was not looked for, so the check FAILs "not performed" (exit 1), as a
    refused --api-key does, and its detail never shows the password."""
    from psycopg.conninfo import make_conninfo

    from functions.shared.settings import get_settings
    from tests.support.postgres import aim_database_check_at

    aim_database_check_at(scram_db, monkeypatch)
    admin = scram_db.roles.login_roles("admin")[0]
    # Built at run time: the repository holds no credential-shaped literal.
    old_password = secrets.token_urlsafe(12)
    stale = make_conninfo(scram_db.admin_conninfo, user=admin, password=old_password)
    monkeypatch.setenv("DATABASE_URL", stale)
    get_settings.cache_clear()

    (check,) = check_database_users()

    assert check.status == FAIL, check
    assert check.detail.startswith("not performed:"), check.detail
    assert "DATABASE_URL" in check.detail
    assert old_password not in check.detail


def test_an_unreachable_local_database_is_a_fail_not_performed(
    aws: str, migrated_db: MigratedDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the local stack the check reaches its database, whatever the shell: a
    connection that fails there is a check not made, never a SKIP that exits 0."""
    from functions.shared.settings import get_settings
    from tests.support.postgres import aim_database_check_at

    aim_database_check_at(migrated_db, monkeypatch)
    # A port nothing listens on (9, discard): the connection is refused at once.
    monkeypatch.setenv("DATABASE_URL", "postgresql://admin@127.0.0.1:9/babyshield")
    get_settings.cache_clear()

    (check,) = check_database_users()

    assert check.status == FAIL, check
    assert check.detail.startswith("not performed:"), check.detail
