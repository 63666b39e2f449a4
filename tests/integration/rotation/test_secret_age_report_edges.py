"""The secret-age report and alarm where on-call trusts them most: a secret marked for
deletion, a report that read nothing, a key already rotated, a rotation finished late.

`babyshield secrets` (ops/secrets.py) and the daily SecretAgeDays / SecretsOverdue
run (functions/secret_age/handler.py -> functions/shared/rotation/age.py), against
the moto server over HTTP and a private PostgreSQL database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from functions.shared import names
from functions.shared.identity.jwt_keys import generate_jwt_secret_value
from functions.shared.inventory import INVENTORY, spec
from functions.shared.rotation.age import publish_secret_ages, secret_age
from functions.shared.rotation.driver import seed_secret
from functions.shared.rotation.store import SecretStore
from ops.cli import main
from tests.support.cli import set_local_cli_environment
from tests.support.postgres import MigratedDatabase, make_user


@pytest.fixture
def cli_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    set_local_cli_environment(monkeypatch)


@pytest.fixture
def store(aws: str) -> SecretStore:
    from tests.support.aws import create_webhook_nonce_table

    create_webhook_nonce_table()
    return SecretStore(caller="test")


def _seed_every_secret(store: SecretStore) -> None:
    """Every inventory secret with a current value (the age logic reads metadata only)."""
    for item in INVENTORY:
        if item.kind == "jwt-signing-key":
            value: dict[str, Any] = json.loads(generate_jwt_secret_value())
        else:
            value = {"kind": item.kind, "placeholder": item.name}
        seed_secret(store, item, value)


def _emf(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if '"_aws"' in line]


def _only(value: Any) -> float:
    if isinstance(value, list):
        [value] = value
    return float(value)


@pytest.fixture
def keys_db(db: MigratedDatabase, monkeypatch: pytest.MonkeyPatch) -> Iterator[MigratedDatabase]:
    """The CLI pointed at a private database through per-tier URLs (local mode)."""
    from functions.shared.db.pools import close_pools
    from functions.shared.settings import get_settings

    monkeypatch.setenv("BABYSHIELD_ENV", "local")
    monkeypatch.setenv("DATABASE_READONLY_URL", db.tier("readonly"))
    monkeypatch.setenv("DATABASE_APP_URL", db.tier("app"))
    close_pools()
    get_settings.cache_clear()
    yield db
    close_pools()


# --- a secret scheduled for deletion ---------------------------------------------------


def test_a_secret_marked_for_deletion_is_overdue_in_the_report_and_the_alarm(
    store: SecretStore,
    cli_environment: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Someone runs `aws secretsmanager delete-secret` on the webhook secret (a 7-day
    recovery window). From that moment every GetSecretValue fails with
    InvalidRequestException ("marked deleted"): the API refuses every feed delivery,
    and in 7 days the secret is gone for good. DescribeSecret still answers, with a
    DeletedDate: the report must call it overdue, `--fail-on-overdue` exit 1, and the
    daily run count it in SecretsOverdue, whose alarm covers unreadable secrets."""
    _seed_every_secret(store)
    item = spec("webhook-signing-secret")
    sm = boto3.client("secretsmanager")
    sm.delete_secret(SecretId=item.secret_name, RecoveryWindowInDays=7)
    with pytest.raises(Exception, match="marked deleted"):
        sm.get_secret_value(SecretId=item.secret_name, VersionStage="AWSCURRENT")

    code = main(["secrets", "--json", "--fail-on-overdue"])
    row = {row["name"]: row for row in json.loads(capsys.readouterr().out)}[item.name]

    # The daily function publishes its EMF lines (the CLI environment turns them off).
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED")
    summary = publish_secret_ages(store)
    [count] = [
        _only(doc[names.METRIC_SECRETS_OVERDUE])
        for doc in _emf(capsys.readouterr().out)
        if names.METRIC_SECRETS_OVERDUE in doc
    ]
    seen = {"report row": row, "exit": code, "overdue": summary["overdue"], "count": count}
    assert row["overdue"] is True, f"a secret marked for deletion passes as healthy: {seen}"
    assert code == 1, seen
    assert item.name in summary["overdue"], seen
    assert count >= 1, seen


# --- the report's JSON and exit code ---------------------------------------------------


def test_the_json_report_says_why_a_secret_has_no_age(
    store: SecretStore, cli_environment: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table says why a secret has no age (`- (ResourceNotFoundException)`,
    `- (AccessDeniedException)`, `- (no AWSCURRENT)`), and that is what tells on-call
    whether to create the secret, fix a role, or finish a rotation. `--json`, the form
    the RUNBOOK's checks and scripts read, says it too (`problem`): else a deleted
    secret and a missing IAM permission look the same."""
    _seed_every_secret(store)
    boto3.client("secretsmanager").delete_secret(
        SecretId=spec("jwt-signing-key").secret_name, ForceDeleteWithoutRecovery=True
    )

    assert main(["secrets"]) == 0
    table = capsys.readouterr().out
    assert "ResourceNotFoundException" in table  # the table knows

    assert main(["secrets", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    row = rows["jwt-signing-key"]
    assert row["overdue"] is True
    assert row["age_days"] is None
    assert "ResourceNotFoundException" in json.dumps(row), (
        f"--json gives no reason for the missing age: {row}"
    )


def test_a_report_that_read_no_secret_exits_1_with_api_keys_beside_it_too(
    keys_db: MigratedDatabase, cli_environment: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """With Secrets Manager unreachable (expired credentials, wrong region, the local
    stack's moto down) `babyshield secrets` exits 1, "could not read any secret": a
    table of dashes must not pass for an answer. With `--api-keys`, the database
    reachable and one partner key in it, the unread secrets are still no answer."""
    # No `aws` fixture: AWS_ENDPOINT_URL is tests/conftest.py's closed loopback port.
    make_user(keys_db)

    assert main(["secrets"]) == 1
    capsys.readouterr()

    code = main(["secrets", "--api-keys"])
    out = capsys.readouterr()
    assert "api-key/" in out.out  # the key was read
    assert code == 1, f"no secret could be read, yet exit {code}:\n{out.out}"


# --- API keys past their period ---------------------------------------------------------


def test_a_key_rotated_as_the_report_asks_is_not_due_again(
    keys_db: MigratedDatabase, cli_environment: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """`babyshield secrets --api-keys --fail-on-overdue` flags a partner key 120 days
    old. On-call rotates it through the admin API (POST /admin/api-keys/{id}/rotate):
    a successor is issued and the old key lives on for the 7-day grace window only,
    and rotating it again is refused with 409 ("already rotated to ..."). The old key
    must not keep the check exiting 1 through its grace window: its successor is the
    key the report lists."""
    from functions.api.identity.store import rotate_api_key
    from functions.shared.caller import Caller
    from functions.shared.errors import Conflict
    from functions.shared.identity.api_keys import generate_api_key

    owner = make_user(keys_db)
    admin = make_user(keys_db, role="admin")
    old_key = owner.hex[:12]  # make_user's key
    with keys_db.admin() as conn:
        conn.execute(
            "UPDATE public.api_keys SET created_at = now() - interval '120 days' WHERE key_id = %s",
            (old_key,),
        )
    assert main(["secrets", "--json", "--api-keys", "--fail-on-overdue"]) == 1
    before = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert before[f"api-key/{old_key}"]["overdue"] is True

    actor = Caller(user_id=admin, role="admin", kind="test")
    new_row, old_row = rotate_api_key(
        actor, old_key, generate_api_key(), timedelta(days=7), lambda conn: None
    )
    assert old_row["expires_at"] is not None
    with pytest.raises(Conflict):  # what on-call meets rotating it again
        rotate_api_key(actor, old_key, generate_api_key(), timedelta(days=7), lambda conn: None)

    # Secrets Manager is unreachable here, so the inventory rows are overdue anyway:
    # look at the keys' rows only.
    main(["secrets", "--json", "--api-keys"])
    after = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert after[f"api-key/{new_row['key_id']}"]["overdue"] is False
    # The rotated key lives out its grace window: no rotation is due for it.
    assert f"api-key/{old_key}" not in after


# --- a rotation that finished late -----------------------------------------------------


def test_a_rotation_finished_late_is_as_old_as_its_promotion(
    store: SecretStore,
) -> None:
    """The JWT key's rotation stops after createSecret (testSecret keeps failing) and
    stays AWSPENDING for 31 days; on-call fixes the cause and finishes it
    (`--resume`, or Secrets Manager's own retry of the same token). finishSecret
    promotes the version and dates the promotion (the `babyshield:promoted` tag), and
    Secrets Manager schedules the next rotation 30 days after it. Dated by the
    version's CreatedDate the key would be 31 days old an hour after the fix, and the
    overdue alarm would page for up to 30 days for a key just rotated (RUNBOOK "A
    rotation failed" step 5 expects an age about 0 and nothing overdue)."""
    item = spec("jwt-signing-key")
    seed_secret(store, item, json.loads(generate_jwt_secret_value()))
    before = store.describe(item.secret_name).version_with("AWSCURRENT")
    token = "resumed-rotation-token-0000000000001"
    store.put_pending(item.secret_name, token, json.loads(generate_jwt_secret_value()))
    created = datetime.now(UTC)

    # 31 days later, finishSecret runs as protocol.run_step does it: promote, date it.
    promoted = created + timedelta(days=31)
    store.promote(item.secret_name, token, before)
    store.remove_stage(item.secret_name, "AWSPENDING", token)
    store.mark_promoted(item.secret_name, token, promoted.timestamp())
    metadata = store.describe(item.secret_name)
    assert metadata.version_with("AWSCURRENT") == token
    assert metadata.current_since() == pytest.approx(promoted.timestamp(), abs=1)

    age = secret_age(store, item, promoted + timedelta(hours=1))
    assert age.pending is None
    assert age.age_days is not None
    assert age.age_days < 1, (
        f"just rotated, yet age {age.age_days} days, last rotated {age.last_rotated}"
    )
    assert not age.overdue


# --- a rotation stuck halfway ------------------------------------------------------------


def test_a_rotation_stuck_for_over_an_hour_is_counted_for_its_alarm(
    store: SecretStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An emergency stopped after its promotion leaves the leaked value unretired; any
    stopped rotation blocks the next. RotationFailures pages once, when it fails: the
    daily run counts rotations unfinished for over an hour (RotationsStuck) so a page
    that was acknowledged and forgotten comes back the next day. One running now (a
    pending version minutes old) is not stuck."""
    _seed_every_secret(store)
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    jwt = spec("jwt-signing-key")
    store.put_pending(jwt.secret_name, "stuck-rotation-token-000000000000001", {"x": 1})
    webhook = spec("webhook-signing-secret")
    store.put_pending(webhook.secret_name, "fresh-rotation-token-00000000000001", {"x": 1})
    later = datetime.now(UTC) + timedelta(minutes=90)
    capsys.readouterr()

    summary = publish_secret_ages(store, now=lambda: later)

    counts = [
        _only(doc[names.METRIC_ROTATIONS_STUCK])
        for doc in _emf(capsys.readouterr().out)
        if names.METRIC_ROTATIONS_STUCK in doc
    ]
    assert counts == [2]
    assert sorted(summary["stuck"]) == ["jwt-signing-key", "webhook-signing-secret"]
    # Minutes after they started, neither is stuck.
    assert publish_secret_ages(store, now=lambda: datetime.now(UTC))["stuck"] == []
