"""`babyshield rotate --all --emergency`, the RUNBOOK's answer to a leak of unknown
extent, and `babyshield rotate db-admin --emergency`, its answer to a leaked admin
password, against a leaked database admin password whose session acts before or while
the command runs."""

from __future__ import annotations

import json
import secrets
from typing import Any

import psycopg
import pytest
from psycopg import sql

from functions.shared.identity.jwt_keys import generate_jwt_secret_value
from functions.shared.inventory import spec
from functions.shared.rotation.driver import seed_secret
from functions.shared.rotation.store import SecretStore
from tests.integration.rotation.conftest import PartnerUser
from tests.integration.rotation.database_fixtures import DatabaseSecrets
from tests.support.cli import set_local_cli_environment


def test_emergency_of_everything_leaves_no_tier_password_a_leaked_admin_session_set(
    db_secrets: DatabaseSecrets,
    partner_user: PartnerUser,
    webhook_secret: str,
    store: SecretStore,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`babyshield rotate --all --emergency` (the RUNBOOK's answer to a leak) walks the
    inventory in order: db-readonly and db-app first, db-admin after them. The admin
    login holds ADMIN OPTION on every tier login (sql/007), so a session opened with the
    leaked admin password can set a tier login's password for as long as it runs, and
    it runs until db-admin's own finishSecret ends it, i.e. after both tiers were
    "made useless". A leaked admin session that sets the app tier's current login to a
    password of its own at that last moment (a legal interleaving) keeps a working app
    login after the command reported every secret rotated: the attacker reads and
    writes as the API, and the API's new connections are refused (the secret no longer
    matches the database) until someone notices. The fix: retire the admin login first
    (rotate db-admin before the tiers in --all, since every tier rotation relies on
    it), or re-arm the tiers after it."""
    from functions.rotate_db import database

    set_local_cli_environment(monkeypatch)
    seed_secret(store, spec("jwt-signing-key"), json.loads(generate_jwt_secret_value()))
    leaked_admin = db_secrets.current("db-admin")
    attacker = db_secrets.session_as(leaked_admin)
    chosen = "chosen-by-the-leaked-admin-1"
    real_terminate = database.terminate_sessions
    acted: list[str] = []

    def leaked_admin_acts_last(conn: Any, role: str) -> int:
        if role == leaked_admin["username"] and not acted:
            target = db_secrets.current("db-app")["username"]
            acted.append(target)
            attacker.execute(
                psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    psycopg.sql.Identifier(target), psycopg.sql.Literal(chosen)
                )
            )
        return real_terminate(conn, role)

    monkeypatch.setattr(database, "terminate_sessions", leaked_admin_acts_last)
    from ops.cli import main

    try:
        code = main(["rotate", "--all", "--emergency"])
        out = capsys.readouterr().out
    finally:
        attacker.close()
    assert code == 0, out
    assert acted, "the leaked admin session was never ended"
    app = db_secrets.current("db-app")
    assert not db_secrets.logs_in({"username": acted[0], "password": chosen}), (
        f"after the emergency of everything, {acted[0]} still logs in with the password "
        "the leaked admin session chose"
    )
    assert db_secrets.agree("db-app"), (
        f"db-app's secret names {app['username']} on a password the database no longer holds"
    )


def test_an_admin_emergency_leaves_no_tier_login_the_leaked_admin_gave_a_password(
    db_secrets: DatabaseSecrets,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The admin login holds ADMIN OPTION on every tier login (sql/007), and each tier
    has a spare login nobody uses between rotations. A session opened with the leaked
    admin password can give the spare read-only login a password of its own, which
    `babyshield audit` cannot see (a password is no right, membership, limit or
    timeout) and the admin's rotation alone does not touch: the attacker would read
    every recall, subscription, user email and audit row until the tier's next
    scheduled rotation, up to 90 days. So `babyshield rotate db-admin --emergency`
    (the RUNBOOK's answer to that leak) re-arms both tiers after the admin, and says so
    in its lines and in --json."""
    from ops.cli import main

    set_local_cli_environment(monkeypatch)
    leaked_admin = db_secrets.current("db-admin")
    in_use = db_secrets.current("db-readonly")["username"]
    (spare,) = [
        login for login in db_secrets.database.roles.login_roles("readonly") if login != in_use
    ]
    chosen = "chosen-by-the-leaked-admin-2"
    # Given a session opened with the leaked admin password re-keys the spare login
    with db_secrets.session_as(leaked_admin) as attacker:
        attacker.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(spare), sql.Literal(chosen))
        )
    try:
        assert db_secrets.logs_in({"username": spare, "password": chosen})

        # When on-call rotates the leaked secret as the RUNBOOK says
        code = main(["rotate", "db-admin", "--emergency", "--json"])
        out = capsys.readouterr().out
        assert code == 0, out
        assert not db_secrets.logs_in(leaked_admin)

        # Then nothing the leaked admin set up still logs in
        assert not db_secrets.logs_in({"username": spare, "password": chosen}), (
            f"after `babyshield rotate db-admin --emergency`, {spare} still logs in with "
            "the password the leaked admin session gave it"
        )
        for name in ("db-admin", "db-readonly", "db-app"):
            assert db_secrets.agree(name)
        # And the command reports each secret it rotated, the admin first, as --all does
        reported = json.loads(out)
        assert [row["name"] for row in reported] == ["db-admin", "db-readonly", "db-app"]
        assert all(row["ok"] for row in reported)
        assert all("sessions ended" in row["detail"] for row in reported)
    finally:
        # The session-wide test database is shared: no known password stays behind.
        db_secrets.database.set_password(spare, secrets.token_urlsafe(18))


def test_an_admin_emergency_names_the_tiers_it_rotates_with_it(
    db_secrets: DatabaseSecrets,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On-call reads why two more secrets changed: the admin's lines say the tiers
    follow it because its login can set their passwords, and every tier gets its own
    line and a row in the summary, so a failed tier is seen and retried by name."""
    from ops.cli import main

    set_local_cli_environment(monkeypatch)
    code = main(["rotate", "db-admin", "--emergency"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "db-readonly and db-app follow" in out
    for name in ("db-admin", "db-readonly", "db-app"):
        assert f"{name}: rotated" in out
    assert "SECRET" in out  # the summary table of a run over several secrets
