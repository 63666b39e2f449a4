"""Database and IAM rotation where a value may have leaked or a step stops halfway:
a pending value is checked for its login whatever it holds, a leaked session can
change nothing while its login is re-armed or retired, and an emergency that stops
after its promotion is reported unfinished and finishes when resumed.

Every test runs the real handlers against moto over HTTP and the scram-sha-256
PostgreSQL cluster of the rotation fixtures.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from functions.shared.inventory import spec
from functions.shared.rotation.driver import LocalRotationDriver, RotationFailed
from functions.shared.rotation.store import EMERGENCY_TAG, SecretStore
from tests.integration.rotation.database_fixtures import DatabaseSecrets, database_down_for_finish
from tests.integration.rotation.state import current_value

# --- rotate_db: a pending value whose password already works skips the tier check ----


@pytest.mark.parametrize("pending_is", ["another tier's login", "the previous value again"])
def test_a_pending_value_that_already_logs_in_is_checked_like_any_other(
    pending_is: str, db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver
) -> None:
    """setSecret checks that the pending value names "the tier's other login, never
    some other role" only when it has to set the password; a value whose password
    already works skips that check and testSecret does not repeat it, so the tier's
    secret is switched to another tier's login, or "rotated" onto an old password."""
    roles = db_secrets.database.roles
    name = spec("db-readonly").secret_name
    if pending_is == "the previous value again":
        db_driver.rotate("db-readonly")
        previous = db_secrets.store.read(name, stage="AWSPREVIOUS")
        assert previous is not None
        pending = dict(previous.value)
    else:
        app = db_secrets.current("db-app")
        pending = {
            **db_secrets.current("db-readonly"),
            "username": app["username"],
            "password": app["password"],
        }
    before = db_secrets.current("db-readonly")
    token = str(uuid.uuid4())
    db_secrets.store.put_pending(name, token, pending)

    with contextlib.suppress(RotationFailed):  # refusing the value is a correct answer
        db_driver.rotate("db-readonly", resume=True)

    after = db_secrets.current("db-readonly")
    # The read-only secret names a read-only login, with a password no version held before.
    assert after["username"] in roles.login_roles("readonly"), after["username"]
    if after != before:
        assert after["password"] != pending["password"]


# --- emergency: a retirement that fails after the promotion is lost --------------------


def test_an_emergency_whose_retirement_failed_after_promotion_can_be_finished(
    db_secrets: DatabaseSecrets,
) -> None:
    """finishSecret promotes first and retires the leaked value after. When the database
    is down for the retirement, the driver reports "nothing was stored" (the token is
    already AWSCURRENT, so `_left` sees no pending version), `--resume` refuses with
    NothingToResume, and the leaked login keeps working."""
    from functions.shared.rotation.driver import NothingToResume

    leaked = db_secrets.current("db-app")

    failing = database_down_for_finish(db_secrets)
    with pytest.raises(RotationFailed) as failed:
        failing.rotate("db-app", emergency=True)
    db_secrets.proxy.up()
    assert failed.value.step == "finishSecret"
    # The new login is already current; the leaked one still logs in.
    assert db_secrets.current("db-app")["username"] != leaked["username"]
    assert db_secrets.logs_in(leaked)

    # The failure must say the emergency is unfinished, and resuming it must finish it.
    assert failed.value.left_pending, str(failed.value)
    try:
        LocalRotationDriver(store=db_secrets.store, backoff_seconds=0.0).rotate(
            "db-app", resume=True
        )
    except NothingToResume as exc:
        pytest.fail(f"the unfinished emergency cannot be resumed: {exc}")
    assert not db_secrets.logs_in(leaked)


# --- emergency: fences restored before the leaked login's sessions are ended -----------


def test_an_emergency_arms_the_login_with_its_tier_settings_despite_its_open_session(
    db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The login an emergency arms was AWSPREVIOUS, "a value that may have leaked", and
    its sessions are ended only after its settings were restored and its password set.
    A session opened with the leaked value is still alive in between and can lift the
    login's fences again (any role may ALTER ROLE itself); they then persist."""
    from functions.rotate_db import database

    leaked = db_secrets.current("db-readonly")
    db_driver.rotate("db-readonly")  # the leaked value is now AWSPREVIOUS
    template = db_secrets.tier_settings("readonly")
    attacker = db_secrets.session_as(leaked)
    real_change_password = database.change_password
    acted: list[str] = []
    after_fence: list[bool] = []

    def concurrent_session_acts_first(conn: Any, role: str, password: str) -> None:
        # The attacker's session lifts the login's fences as late as it can: right
        # before the password changes. Its session must be gone by then.
        if role == leaked["username"] and not acted:
            acted.append(role)
            try:
                attacker.execute("ALTER ROLE CURRENT_USER SET default_transaction_read_only = off")
            except psycopg.OperationalError:
                after_fence.append(True)
        real_change_password(conn, role, password)

    monkeypatch.setattr(database, "change_password", concurrent_session_acts_first)
    # And as early as it can: before the step starts, which the restore then undoes.
    attacker.execute("SET default_transaction_read_only = off")  # a session may
    attacker.execute("ALTER ROLE CURRENT_USER SET default_transaction_read_only = off")
    try:
        db_driver.rotate("db-readonly", emergency=True)
        armed = db_secrets.current("db-readonly")
        assert acted
        assert after_fence == [True], "the leaked session was still running"
        assert armed["username"] == leaked["username"]
        assert db_secrets.settings_of(leaked["username"]) == {0: template}
        with psycopg.connect(
            db_secrets.database.admin_conninfo,
            user=armed["username"],
            password=armed["password"],
        ) as conn:
            assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
    finally:
        attacker.close()
        # The session-wide test database is shared: give the login its fences back.
        with db_secrets.database.admin() as conn:
            database.restore_login_settings(conn, leaked["username"], "readonly")


# --- malformed values ---------------------------------------------------------------


def test_the_admin_secret_is_never_switched_to_another_login(
    db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver
) -> None:
    """Single user: setSecret returns as soon as the pending value logs in, before it
    compares the pending username with the admin's, and testSecret only checks that
    the value logs in and reads a table. A pending value naming a tier login is
    promoted: db-admin then names a login that can neither migrate nor rotate."""
    name = spec("db-admin").secret_name
    admin_login = db_secrets.current("db-admin")["username"]
    readonly = db_secrets.current("db-readonly")
    pending = {
        **db_secrets.current("db-admin"),
        "username": readonly["username"],
        "password": readonly["password"],
    }
    db_secrets.store.put_pending(name, str(uuid.uuid4()), pending)

    with contextlib.suppress(RotationFailed):  # refusing the value is a correct answer
        db_driver.rotate("db-admin", resume=True)

    assert db_secrets.current("db-admin")["username"] == admin_login


def test_an_iam_emergency_whose_deactivation_failed_after_promotion_can_be_finished(
    store: SecretStore, partner_user: Any
) -> None:
    """The IAM side of the same gap: IAM refuses UpdateAccessKey during finishSecret of
    an emergency (throttling, an outage). The new key is current, the leaked key stays
    Active, the failure says "nothing was stored" and --resume refuses."""
    import boto3

    from functions.rotate_iam.access_keys import AccessKeyRotator
    from functions.rotate_iam.rotators import ByKindRotator
    from functions.shared.rotation.driver import NothingToResume
    from functions.shared.rotation.protocol import run_step

    iam = boto3.client("iam")

    def iam_unavailable(**_: object) -> None:
        raise ConnectionError("IAM unreachable")

    iam.meta.events.register("before-call.iam.UpdateAccessKey", iam_unavailable)
    rotator = ByKindRotator({"iam-access-key": AccessKeyRotator(iam=iam)})
    failing = LocalRotationDriver(
        store=store,
        handler=lambda event, context: run_step(event, rotator, "rotate_iam", store),
        backoff_seconds=0.0,
    )
    with pytest.raises(RotationFailed) as failed:
        failing.rotate("iam-partner-export", emergency=True)
    assert failed.value.step == "finishSecret"
    leaked = partner_user.first_key_id
    listed = boto3.client("iam").list_access_keys(UserName=partner_user.name)
    status = {key["AccessKeyId"]: key["Status"] for key in listed["AccessKeyMetadata"]}
    assert status[leaked] == "Active"
    assert current_value(store, "iam-partner-export")["AccessKeyId"] != leaked

    assert failed.value.left_pending, str(failed.value)
    try:
        LocalRotationDriver(store=store, backoff_seconds=0.0).rotate(
            "iam-partner-export", resume=True
        )
    except NothingToResume as exc:
        pytest.fail(f"the unfinished emergency cannot be resumed: {exc}")


# --- rotate_jwt: a second routine rotation inside the token lifetime -------------------


# --- emergency: the retired login's password is set while its sessions still run ------


def test_an_emergency_leaves_no_password_the_leaked_session_chose(
    db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """retire() gives the leaked login "a password nobody stores" and only then ends its
    sessions. Any PostgreSQL role may change its own password, so a session opened with
    the leaked value, still alive in between, sets one of its own; the emergency reports
    "old login's password replaced and its sessions ended" and the attacker logs in
    again with the tier's rights until the next rotation."""

    leaked = db_secrets.current("db-app")
    chosen = "chosen-by-the-attacker-1"
    with _leaked_session_sets_password_when_ended(db_secrets, monkeypatch, leaked, chosen):
        db_driver.rotate("db-app", emergency=True)
    assert not db_secrets.logs_in({"username": leaked["username"], "password": chosen})


def test_a_leaked_admin_session_cannot_keep_a_password_of_its_own(
    db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The admin login cannot be fenced off (rotation logs in as it), and any of its
    sessions may set its own password before it is ended: the emergency's retirement
    sets the current password again after ending them."""

    leaked = db_secrets.current("db-admin")
    chosen = "chosen-by-the-attacker-2"
    with _leaked_session_sets_password_when_ended(db_secrets, monkeypatch, leaked, chosen):
        db_driver.rotate("db-admin", emergency=True)
    assert not db_secrets.logs_in({**leaked, "password": chosen})
    assert db_secrets.logs_in(db_secrets.current("db-admin"))


def test_an_admin_emergency_ends_the_leaked_sessions_before_finish_secret(
    db_secrets: DatabaseSecrets,
) -> None:
    """Each step is its own invocation, seconds apart. In an emergency of db-admin,
    setSecret ends the admin login's other sessions as soon as the leaked password stops
    working (end them, set the pending password again, end what opened in between), so
    none opened with the leaked value lives on until finishSecret's retirement to set a
    password of its own: the emergency completes, the stored AWSCURRENT logs in, and no
    password the attacker chose does."""
    from functions.rotate_db.handler import lambda_handler

    leaked = db_secrets.current("db-admin")
    attacker = db_secrets.session_as(leaked)
    chosen = "chosen-between-set-and-finish-1"
    acted: list[str] = []

    def handler(event: Mapping[str, Any], context: Any) -> Any:
        answer = lambda_handler(event, context)
        if event["Step"] == "setSecret" and not acted:
            # The leaked session acts once setSecret has returned: ended already, this
            # fails; alive, it would take the login.
            acted.append("tried")
            with contextlib.suppress(psycopg.Error):
                attacker.execute(f"ALTER ROLE CURRENT_USER PASSWORD '{chosen}'")
                acted.append("succeeded")
        return answer

    driver = LocalRotationDriver(store=db_secrets.store, handler=handler, backoff_seconds=0.0)
    try:
        driver.rotate("db-admin", emergency=True)
        survived = not attacker.closed and _still_alive(attacker)
    finally:
        attacker.close()
    assert acted == ["tried"], "setSecret never ran, or the leaked session outlived it"
    assert not db_secrets.logs_in({**leaked, "password": chosen})
    assert not survived, "the leaked admin session is still running after the emergency"
    assert db_secrets.agree("db-admin")
    metadata = db_secrets.store.describe(spec("db-admin").secret_name)
    assert metadata.unfinished_rotation() is None
    assert EMERGENCY_TAG not in metadata.tags


def _still_alive(conn: psycopg.Connection[Any]) -> bool:
    try:
        conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def test_an_emergency_that_fails_while_its_login_is_fenced_off_recovers_on_retry(
    db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure between NOLOGIN and LOGIN leaves the login unable to log in; the
    step's retry must still recognise it as the tier's login and arm it."""
    from functions.rotate_db import database

    db_driver.rotate("db-app")  # the login an emergency arms is now AWSPREVIOUS
    real_change_password = database.change_password
    failures: list[str] = []

    def fails_once(conn: Any, role: str, password: str) -> None:
        if not failures:
            failures.append(role)
            raise psycopg.OperationalError("the connection dropped")
        real_change_password(conn, role, password)

    monkeypatch.setattr(database, "change_password", fails_once)
    result = db_driver.rotate("db-app", emergency=True)

    assert failures
    assert result.attempts["setSecret"] == 2
    assert db_secrets.logs_in(db_secrets.current("db-app"))
    assert db_secrets.agree("db-app")


def test_a_rotation_stopped_after_its_promotion_cannot_be_cancelled(
    db_secrets: DatabaseSecrets,
) -> None:
    """Cancelling would drop the labels that say its tidy-up is left, for good."""
    from functions.shared.rotation.protocol import RotationInProgress

    failing = database_down_for_finish(db_secrets)
    with pytest.raises(RotationFailed):
        failing.rotate("db-app", emergency=True)
    db_secrets.proxy.up()

    with pytest.raises(RotationInProgress, match="resume it instead of cancelling"):
        LocalRotationDriver(store=db_secrets.store).cancel("db-app")


@contextmanager
def _leaked_session_sets_password_when_ended(
    db_secrets: DatabaseSecrets,
    monkeypatch: pytest.MonkeyPatch,
    leaked: dict[str, Any],
    chosen: str,
) -> Iterator[None]:
    """A session opened with the leaked value sets a password of its own at the last
    moment it can: just before the rotation ends its sessions (a legal interleaving)."""
    from functions.rotate_db import database

    attacker = db_secrets.session_as(leaked)
    real_terminate = database.terminate_sessions
    acted: list[str] = []

    def concurrent_session_acts_first(conn: Any, role: str) -> int:
        if role == leaked["username"] and not acted:
            acted.append(role)
            attacker.execute(f"ALTER ROLE CURRENT_USER PASSWORD '{chosen}'")
        return real_terminate(conn, role)

    monkeypatch.setattr(database, "terminate_sessions", concurrent_session_acts_first)
    try:
        yield
    finally:
        attacker.close()
    assert acted
