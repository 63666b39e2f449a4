"""`babyshield rotate` and `babyshield secrets` against the local stack (moto + PostgreSQL)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import boto3
import pytest

from functions.shared.identity import webhooks
from functions.shared.identity.jwt_keys import JwtKeyStore, generate_jwt_secret_value
from functions.shared.identity.secret_versions import SecretVersionsCache
from functions.shared.identity.tokens import TokenRejected, issue_access_token, verify_access_token
from functions.shared.inventory import INVENTORY, spec
from functions.shared.rotation.driver import seed_secret
from functions.shared.rotation.store import SecretStore
from ops.cli import main
from tests.integration.rotation.conftest import PartnerUser
from tests.integration.rotation.database_fixtures import DatabaseSecrets
from tests.support.cli import set_local_cli_environment


@pytest.fixture
def cli_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    set_local_cli_environment(monkeypatch)


@pytest.fixture
def every_secret(
    db_secrets: DatabaseSecrets,
    partner_user: PartnerUser,
    webhook_secret: str,
    store: SecretStore,
    cli_environment: None,
) -> dict[str, Any]:
    seed_secret(store, spec("jwt-signing-key"), json.loads(generate_jwt_secret_value()))
    return {name: _current(store, name) for name in (item.name for item in INVENTORY)}


def _current(store: SecretStore, name: str) -> dict[str, Any]:
    found = store.read(spec(name).secret_name, stage="AWSCURRENT")
    assert found is not None
    return found.value


def _jwt_keys() -> JwtKeyStore:
    return JwtKeyStore(spec("jwt-signing-key").secret_name, cache=SecretVersionsCache())


def _webhook_accepted(secret: str) -> bool:
    now = int(time.time())
    body = b"{}"
    key = webhooks.decode_secret(secret)
    headers = {
        "webhook-id": "m1",
        "webhook-timestamp": str(now),
        "webhook-signature": webhooks.sign(key, "m1", now, body),
    }
    try:
        webhooks.verify_webhook(
            headers,
            body,
            webhooks.live_webhook_keys(SecretVersionsCache()),
            tolerance_seconds=60,
        )
    except webhooks.WebhookRejected:
        return False
    return True


def test_rotate_all_emergency_makes_every_old_value_useless(
    every_secret: dict[str, Any],
    db_secrets: DatabaseSecrets,
    store: SecretStore,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The issue's emergency requirement: after it, each old value is refused."""
    # Given a token signed by the current key, and every secret's current value
    old_token = issue_access_token(uuid.uuid4(), "user", keys=_jwt_keys()).token
    old = every_secret
    # When on-call runs the emergency rotation of everything
    code = main(["rotate", "--all", "--emergency"])
    out = capsys.readouterr().out
    # Then it succeeded for each secret and says what it did to the old value
    assert code == 0, out
    for item in INVENTORY:
        assert f"{item.name}: rotated" in out
    assert "sessions ended" in out
    assert "deactivated" in out
    # And the old database passwords are refused (the server checks scram-sha-256)
    for name in ("db-readonly", "db-app", "db-admin"):
        assert not db_secrets.logs_in(old[name])
        assert db_secrets.agree(name)
    # And the old JWT is refused, a new one verifies
    with pytest.raises(TokenRejected):
        verify_access_token(old_token, keys=_jwt_keys())
    verify_access_token(issue_access_token(uuid.uuid4(), "user", keys=_jwt_keys()).token)
    # And the old IAM key is deactivated
    keys = boto3.client("iam").list_access_keys(UserName=old["iam-partner-export"]["UserName"])
    status = {key["AccessKeyId"]: key["Status"] for key in keys["AccessKeyMetadata"]}
    assert status[old["iam-partner-export"]["AccessKeyId"]] == "Inactive"
    # And the old webhook secret is refused, the new one accepted
    assert not _webhook_accepted(old["webhook-signing-secret"]["secret"])
    assert _webhook_accepted(_current(store, "webhook-signing-secret")["secret"])


def test_one_failing_secret_does_not_stop_the_others_and_fails_the_command(
    every_secret: dict[str, Any], store: SecretStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """Protects the emergency contract: rotate what can be rotated, then exit non-zero."""
    # Given the IAM user is gone (its keys cannot be rotated)
    iam = boto3.client("iam")
    user = every_secret["iam-partner-export"]["UserName"]
    for key in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
        iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
    iam.delete_user(UserName=user)
    # When everything is rotated as an emergency
    code = main(["rotate", "--all", "--emergency", "--json"])
    results = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    # Then the command fails, names the IAM secret, and every other secret is rotated
    assert code == 1
    assert results["iam-partner-export"]["ok"] is False
    assert all(r["ok"] for name, r in results.items() if name != "iam-partner-export")
    for name in ("jwt-signing-key", "webhook-signing-secret", "db-app"):
        assert _current(store, name) != every_secret[name]


def test_secrets_reports_each_secret_and_shows_the_new_age_after_a_rotation(
    every_secret: dict[str, Any], store: SecretStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """Protects `babyshield secrets --json`: the inventory, with ages that rotation resets."""
    assert main(["rotate", "db-app"]) == 0
    capsys.readouterr()
    assert main(["secrets", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in report] == [item.name for item in INVENTORY]
    for row in report:
        # Every row has the same keys, for a script's sake; only the webhook secret's
        # says which version the feed signs with.
        assert (row["feed_signs_with"] is None) == (row["name"] != "webhook-signing-secret")
        assert set(row) == {
            "name",
            "kind",
            "period_days",
            "last_rotated",
            "age_days",
            "next_due",
            "overdue",
            "pending_version",
            "stuck",
            "problem",
            "rotation_problem",
            "feed_signs_with",
        }
        assert row["overdue"] is False
        assert row["pending_version"] is None
        assert row["problem"] is None
        # The local stack's rotation settings are the inventory's.
        assert row["rotation_problem"] is None
        assert 0 <= row["age_days"] < 0.01
    by_name = {row["name"]: row for row in report}
    assert by_name["jwt-signing-key"]["period_days"] == 30
    current = store.describe(spec("db-app").secret_name)
    assert current.version_with("AWSCURRENT") is not None


def test_secrets_marks_a_missing_secret_overdue(
    aws: str, cli_environment: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Protects the report from calling an absent secret healthy."""
    assert main(["secrets", "--fail-on-overdue"]) == 1
    out = capsys.readouterr().out
    assert "ResourceNotFoundException" in out
    assert "OVERDUE" in out


def test_rotate_refuses_while_a_rotation_is_pending_and_cancel_clears_it(
    aws: str,
    store: SecretStore,
    webhook_secret: str,
    cli_environment: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Protects the runbook path for a rotation that failed half-way."""
    arn = store.describe(spec("webhook-signing-secret").secret_name).arn
    store.put_pending(arn, str(uuid.uuid4()), {"kind": "generated", "secret": "whsec_x"})
    assert main(["rotate", "webhook-signing-secret"]) == 1
    assert "already AWSPENDING" in capsys.readouterr().out
    assert main(["rotate", "webhook-signing-secret", "--cancel"]) == 0
    assert main(["rotate", "webhook-signing-secret"]) == 0
    assert _current(store, "webhook-signing-secret")["secret"] != webhook_secret


@pytest.mark.parametrize("pending", [True, False], ids=["a-pending-version", "nothing-pending"])
def test_cancel_with_json_prints_the_outcome_as_json(
    aws: str,
    store: SecretStore,
    webhook_secret: str,
    cli_environment: None,
    capsys: pytest.CaptureFixture[str],
    pending: bool,
) -> None:
    """`rotate NAME --cancel --json` answers in the shape of every other rotate result,
    not the plain-text line a script's json.loads refuses."""
    name = "webhook-signing-secret"
    version = str(uuid.uuid4())
    if pending:
        arn = store.describe(spec(name).secret_name).arn
        store.put_pending(arn, version, {"kind": "generated", "secret": webhook_secret})
    assert main(["rotate", name, "--cancel", "--json"]) == 0
    [outcome] = json.loads(capsys.readouterr().out)
    assert outcome["name"] == name
    assert outcome["ok"] is True
    assert outcome["version_id"] == (version if pending else None)
    assert outcome["detail"].startswith("cancelled" if pending else "no rotation in progress")


def test_cancelling_an_access_key_rotation_says_its_key_stays_active_for_now(
    aws: str,
    store: SecretStore,
    partner_user: PartnerUser,
    cli_environment: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """IAM made a key for the cancelled version, and the cancel only drops the label:
    the answer says the key stays active until the daily sweep deactivates it."""
    name = "iam-partner-export"
    arn = store.describe(spec(name).secret_name).arn
    store.put_pending(arn, str(uuid.uuid4()), {"kind": "iam-access-key", "UserName": "x"})
    assert main(["rotate", name, "--cancel"]) == 0
    assert "stays active until the daily key sweep deactivates it" in capsys.readouterr().out


def test_cancelling_an_emergency_says_the_leaked_value_still_works(
    aws: str,
    store: SecretStore,
    webhook_secret: str,
    cli_environment: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The cancel drops the tag that recorded the emergency, so its own answer is the
    last place that says one was under way: it names the command that replaces the
    leaked value (RUNBOOK "A rotation failed", step 4)."""
    name = "webhook-signing-secret"
    version = str(uuid.uuid4())
    arn = store.describe(spec(name).secret_name).arn
    store.put_pending(arn, version, {"kind": "generated", "secret": webhook_secret})
    store.mark_emergency(arn, version)
    assert main(["rotate", name, "--cancel"]) == 0
    out = capsys.readouterr().out
    assert f"version {version} is no longer AWSPENDING" in out
    assert "leaked value still works" in out
    assert f"babyshield rotate {name} --emergency" in out
    assert main(["rotate", name, "--cancel"]) == 0
    assert "emergency" not in capsys.readouterr().out  # said once, for the emergency itself


def test_unknown_secret_name_is_a_clear_error(
    aws: str, cli_environment: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rotate", "db-nope"]) == 2  # a usage error: nothing rotated
    err = capsys.readouterr().err
    assert "unknown secret 'db-nope'" in err
    assert "db-app" in err


def test_local_stack_secrets_are_created_once_and_every_one_rotates(
    aws: str,
    rotation_db: Any,
    store: SecretStore,
    cli_environment: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Protects `make run` + `babyshield rotate --all`: secrets that agree with the database."""
    from ops.rotate import ensure_local_secrets

    # Given a fresh local stack
    created = ensure_local_secrets(rotation_db.admin_conninfo, rotation_db.roles)
    assert sorted(created) == sorted(item.name for item in INVENTORY)
    # When it starts again, nothing is recreated (the database keeps its passwords)
    assert ensure_local_secrets(rotation_db.admin_conninfo, rotation_db.roles) == []
    # Then every secret rotates through the real handlers
    assert main(["rotate", "--all"]) == 0, capsys.readouterr().out
    # And each database secret's AWSCURRENT logs in
    _every_database_secret_logs_in(rotation_db.admin_conninfo, store)


def test_a_fresh_start_seeds_logins_an_earlier_run_left_fenced_off(
    aws: str, rotation_db: Any, store: SecretStore, cli_environment: None
) -> None:
    """An emergency step that failed halfway leaves its login NOLOGIN (the fence a retry
    lifts). `make run` starts with fresh secrets and seeds the tier's first login: it
    must be able to log in, or every request that needs the database is a 503."""
    import psycopg
    from psycopg import sql

    roles = rotation_db.roles
    with psycopg.connect(rotation_db.admin_conninfo, autocommit=True) as conn:
        for login in (roles.readonly_a, roles.app_a):
            conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(login)))

    from ops.rotate import ensure_local_secrets

    ensure_local_secrets(rotation_db.admin_conninfo, roles)

    _every_database_secret_logs_in(rotation_db.admin_conninfo, store)


def _every_database_secret_logs_in(conninfo: str, store: SecretStore) -> None:
    import psycopg

    for name in ("db-readonly", "db-app", "db-admin"):
        value = _current(store, name)
        with psycopg.connect(conninfo, user=value["username"], password=value["password"]) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (value["username"],)


def test_secrets_flags_partner_api_keys_past_their_period(
    db_secrets: DatabaseSecrets, cli_environment: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Protects the API-key part of the age report: an old key is flagged, a new one not."""
    from functions.shared.db.pools import close_pools

    database = db_secrets.database
    with database.admin() as conn:
        owner = conn.execute(
            "INSERT INTO public.users (email, password_hash, role) "
            "VALUES ('partner@example.com', 'x', 'user') RETURNING id"
        ).fetchone()
        for key_id, days in (("oldpartnerkey001", 120), ("newpartnerkey002", 5)):
            conn.execute(
                "INSERT INTO public.api_keys (key_id, owner_id, secret_hash, scopes, created_at) "
                "VALUES (%s, %s, '\\x00', ARRAY['recalls:read'], "
                "now() - make_interval(days => %s))",
                (key_id, owner[0] if owner else None, days),
            )
    close_pools()
    try:
        assert main(["secrets", "--json", "--api-keys"]) == 0
        report = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    finally:
        close_pools()
        database.empty()
    assert report["api-key/oldpartnerkey001"]["overdue"] is True
    assert report["api-key/newpartnerkey002"]["overdue"] is False
    assert report["api-key/newpartnerkey002"]["period_days"] == 90
    assert report["db-app"]["overdue"] is False
