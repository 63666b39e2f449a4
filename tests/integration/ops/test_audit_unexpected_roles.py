"""`babyshield audit` after a leaked admin password: a login the leak made for itself.

The admin login can create roles and grant what the owner may grant. A login made
with it keeps its rights through every rotation, the emergency one included, since
rotations re-key only the deployment's own logins. The database check names any
role beyond the deployment's that holds a right on the database, its tables or a
tier group."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from psycopg import sql

from ops.audit_aws import check_database_users
from ops.audit_checks import FAIL, PASS
from tests.support.postgres import MigratedDatabase, aim_database_check_at


@pytest.fixture
def audited(
    aws: str, migrated_db: MigratedDatabase, monkeypatch: pytest.MonkeyPatch
) -> MigratedDatabase:
    aim_database_check_at(migrated_db, monkeypatch)
    return migrated_db


@pytest.fixture
def backdoor(audited: MigratedDatabase) -> Iterator[str]:
    """What a session with the leaked admin password could leave: a login of its own
    in the app group, reading a table directly."""
    name = f"backdoor_{uuid.uuid4().hex[:8]}"
    role = sql.Identifier(name)
    with audited.admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(audited.roles.app), role))
        conn.execute(sql.SQL("GRANT SELECT ON public.users TO {}").format(role))
    try:
        yield name
    finally:
        with audited.admin() as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
            conn.execute(sql.SQL("DROP ROLE {}").format(role))


def test_a_freshly_migrated_database_has_no_role_beyond_the_deployments(
    audited: MigratedDatabase,
) -> None:
    (check,) = check_database_users()
    assert check.status == PASS, check.detail


def test_a_login_the_leaked_admin_made_is_named_with_what_it_holds(
    audited: MigratedDatabase, backdoor: str
) -> None:
    (check,) = check_database_users()

    assert check.status == FAIL
    assert f"{backdoor} is no role of the deployment" in check.detail
    assert f"membership of {audited.roles.app}" in check.detail
    assert "table users" in check.detail


def test_a_right_granted_to_public_is_named_too(audited: MigratedDatabase) -> None:
    with audited.admin() as conn:
        conn.execute("GRANT SELECT ON public.recalls TO PUBLIC")
    try:
        (check,) = check_database_users()
    finally:
        with audited.admin() as conn:
            conn.execute("REVOKE SELECT ON public.recalls FROM PUBLIC")

    assert check.status == FAIL
    assert "PUBLIC is no role of the deployment but holds table recalls" in check.detail
