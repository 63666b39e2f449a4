"""rotate_db against a PostgreSQL that checks passwords (scram-sha-256), via the real handler."""

from __future__ import annotations

import pytest

from functions.shared.rotation.driver import LocalRotationDriver, NothingToResume, RotationFailed
from tests.integration.rotation.database_fixtures import DatabaseSecrets
from tests.integration.rotation.state import stages


@pytest.mark.parametrize("name", ["db-readonly", "db-app"])
def test_alternating_rotation_switches_to_the_other_login_with_a_new_password(
    name: str, db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver
) -> None:
    """Protects the alternating-users strategy: the login in use is never changed."""
    # Given the tier's secret on its first login
    before = db_secrets.current(name)
    # When it rotates
    result = db_driver.rotate(name)
    # Then AWSCURRENT is the tier's other login, with a password the server accepts
    after = db_secrets.current(name)
    assert after["username"] != before["username"]
    assert after["username"] in db_secrets.database.roles.login_roles(name.removeprefix("db-"))
    assert db_secrets.logs_in(after)
    # And the previous login still works (connections opened with it keep going)
    assert db_secrets.logs_in(before)
    assert stages(db_secrets.store, name)[result.version_id] == ("AWSCURRENT",)
    # When it rotates again, it comes back to the first login with a new password
    db_driver.rotate(name)
    again = db_secrets.current(name)
    assert again["username"] == before["username"]
    assert again["password"] != before["password"]
    assert not db_secrets.logs_in(before)
    assert db_secrets.logs_in(again)


def test_admin_rotation_changes_its_own_password(
    db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver
) -> None:
    """Protects single-user rotation: the admin keeps its login, the old password dies."""
    before = db_secrets.current("db-admin")
    db_driver.rotate("db-admin")
    after = db_secrets.current("db-admin")
    assert after["username"] == before["username"]
    assert not db_secrets.logs_in(before)
    assert db_secrets.logs_in(after)
    # And the tiers still rotate with the new admin password
    db_driver.rotate("db-app")
    assert db_secrets.agree("db-app")


def test_generated_passwords_are_safe_in_a_connection_string(
    db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver
) -> None:
    """Protects consumers that build URLs: no character needs escaping."""
    import string

    db_driver.rotate("db-readonly")
    password = db_secrets.current("db-readonly")["password"]
    assert len(password) >= 32
    assert set(password) <= set(string.ascii_letters + string.digits)


def test_database_down_during_set_secret_completes_after_retries(
    db_secrets: DatabaseSecrets,
) -> None:
    """Fault: the database is unreachable for setSecret's first attempts."""
    from functions.rotate_db.handler import lambda_handler

    seen: list[bool] = []

    def down_for_two_set_attempts(event, context):
        if event["Step"] == "setSecret" and len(seen) < 2:
            db_secrets.proxy.down()
        else:
            db_secrets.proxy.up()
        if event["Step"] == "setSecret":
            seen.append(True)
        seen_agree.append(db_secrets.agree("db-app"))
        return lambda_handler(event, context)

    seen_agree: list[bool] = []
    driver = LocalRotationDriver(
        store=db_secrets.store, handler=down_for_two_set_attempts, backoff_seconds=0.0
    )
    result = driver.rotate("db-app")
    assert result.attempts["setSecret"] == 3
    assert all(seen_agree)
    assert db_secrets.agree("db-app")


@pytest.mark.parametrize("step", ["createSecret", "setSecret", "testSecret", "finishSecret"])
def test_database_down_at_any_step_never_lets_secret_and_database_disagree(
    step: str, db_secrets: DatabaseSecrets
) -> None:
    """Fault at each step: the rotation fails, stays consistent, and finishes on resume."""
    from functions.rotate_db.handler import lambda_handler

    checks: list[bool] = []

    def down_at(event, context):
        checks.append(db_secrets.agree("db-readonly"))
        if event["Step"] == step:
            db_secrets.proxy.down()
        return lambda_handler(event, context)

    failing = LocalRotationDriver(store=db_secrets.store, handler=down_at, backoff_seconds=0.0)
    before = db_secrets.current("db-readonly")
    if step == "finishSecret":
        # finishSecret touches only Secrets Manager for a normal rotation: it succeeds.
        failing.rotate("db-readonly")
        db_secrets.proxy.up()
        assert db_secrets.agree("db-readonly")
        return
    with pytest.raises(RotationFailed) as failed:
        failing.rotate("db-readonly")
    assert failed.value.step == step
    assert db_secrets.current("db-readonly") == before
    assert all(checks)
    assert db_secrets.agree("db-readonly")
    pending = [v for v, s in stages(db_secrets.store, "db-readonly").items() if "AWSPENDING" in s]
    assert pending == ([] if step == "createSecret" else [failed.value.token])
    assert failed.value.left_pending == (step != "createSecret")
    # When the database is back, resuming finishes the same version
    db_secrets.proxy.up()
    driver = LocalRotationDriver(store=db_secrets.store, backoff_seconds=0.0)
    if step == "createSecret":
        # Nothing was stored: nothing to resume, and a plain run starts a version of its own.
        with pytest.raises(NothingToResume):
            driver.rotate("db-readonly", resume=True)
        assert driver.rotate("db-readonly").version_id != failed.value.token
    else:
        assert driver.rotate("db-readonly", resume=True).version_id == failed.value.token
    assert db_secrets.agree("db-readonly")
    assert db_secrets.current("db-readonly")["username"] != before["username"]


def test_wrong_admin_password_fails_set_secret_until_it_is_fixed(
    db_secrets: DatabaseSecrets,
) -> None:
    """Fault: the admin secret's password is refused; the tier's secret is left untouched."""
    from functions.rotate_db.handler import lambda_handler

    roles = db_secrets.database.roles
    good = db_secrets.database.passwords[roles.migrator]
    attempts: list[str] = []

    def admin_password_wrong_once(event, context):
        if event["Step"] == "setSecret":
            attempts.append("set")
            if len(attempts) == 1:
                db_secrets.database.set_password(roles.migrator, "something-else-entirely")
            else:
                db_secrets.database.set_password(roles.migrator, good)
        assert db_secrets.agree("db-readonly")
        return lambda_handler(event, context)

    driver = LocalRotationDriver(
        store=db_secrets.store, handler=admin_password_wrong_once, backoff_seconds=0.0
    )
    result = driver.rotate("db-readonly")
    assert result.attempts["setSecret"] == 2
    assert db_secrets.agree("db-readonly")


@pytest.mark.parametrize("name", ["db-readonly", "db-admin"])
def test_crash_after_set_secret_is_retried_without_a_second_password_change(
    name: str, db_secrets: DatabaseSecrets
) -> None:
    """Fault: the Lambda dies after setSecret changed the password; the retry finds it done."""
    from functions.rotate_db.handler import lambda_handler

    crashed: list[str] = []

    def crash_after_set(event, context):
        outcome = lambda_handler(event, context)
        if event["Step"] == "setSecret" and not crashed:
            crashed.append(event["ClientRequestToken"])
            raise TimeoutError("Lambda timed out after the password change")
        return outcome

    driver = LocalRotationDriver(
        store=db_secrets.store, handler=crash_after_set, backoff_seconds=0.0
    )
    result = driver.rotate(name)
    assert result.attempts["setSecret"] == 2
    assert db_secrets.agree(name)


def test_a_single_user_rotation_stuck_after_set_secret_is_finished_by_resume(
    db_secrets: DatabaseSecrets,
) -> None:
    """Protects recovery of the admin's one window: set done, finish never ran."""
    from functions.rotate_db.handler import lambda_handler

    def finish_unreachable(event, context):
        if event["Step"] == "finishSecret":
            raise ConnectionError("Secrets Manager unreachable")
        return lambda_handler(event, context)

    stuck = LocalRotationDriver(
        store=db_secrets.store, handler=finish_unreachable, backoff_seconds=0.0
    )
    with pytest.raises(RotationFailed):
        stuck.rotate("db-admin")
    with pytest.raises(Exception, match="resume"):
        LocalRotationDriver(store=db_secrets.store).cancel("db-admin")
    LocalRotationDriver(store=db_secrets.store).rotate("db-admin", resume=True)
    assert db_secrets.agree("db-admin")


def test_emergency_rotation_kills_the_old_login_and_its_sessions(
    db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver
) -> None:
    """Protects the leak response: the leaked password and its open sessions stop at once."""
    import psycopg

    # Given a normal rotation (the previous login still works) and a session on the
    # login now in use, whose password leaks
    db_driver.rotate("db-app")
    leaked = db_secrets.current("db-app")
    session = psycopg.connect(
        db_secrets.database.admin_conninfo,
        user=leaked["username"],
        password=leaked["password"],
        autocommit=True,
    )
    # When an emergency rotation runs
    db_driver.rotate("db-app", emergency=True)
    # Then the leaked password is refused, the open session is gone, the new one works
    assert not db_secrets.logs_in(leaked)
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    session.close()
    assert db_secrets.agree("db-app")
    assert not any("AWSPREVIOUS" in s for s in stages(db_secrets.store, "db-app").values())


def test_a_bootstrap_value_naming_the_group_role_rotates_onto_the_first_login(
    db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver
) -> None:
    """Protects the first deploy: CDK's first value names the tier's NOLOGIN group."""
    from functions.shared.inventory import spec

    roles = db_secrets.database.roles
    bootstrap = {**db_secrets.current("db-app"), "username": roles.app, "password": "unusable"}
    db_secrets.store.put_pending(spec("db-app").secret_name, "b" * 36, bootstrap)
    arn = db_secrets.store.describe(spec("db-app").secret_name).arn
    current = db_secrets.store.describe(arn).version_with("AWSCURRENT")
    db_secrets.store.promote(arn, "b" * 36, current)
    db_secrets.store.remove_stage(arn, "AWSPENDING", "b" * 36)
    db_driver.rotate("db-app")
    after = db_secrets.current("db-app")
    assert after["username"] in (roles.app_a, roles.app_b)
    assert db_secrets.agree("db-app")


def test_a_role_creator_in_the_tier_group_is_never_taken_for_a_tier_login(
    db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver
) -> None:
    """Protects the read path from RDS's master user: on PostgreSQL 16 and later the
    role that created the tier's group (the master, which runs the migrations) is a
    member of it, and its name may sort before the tier's own logins."""
    roles = db_secrets.database.roles
    creator = f"{roles.prefix}_creator"  # sorts before `_readonly_a`
    with db_secrets.database.admin() as conn:
        conn.execute(f"CREATE ROLE {creator} LOGIN CREATEROLE")
        conn.execute(f"GRANT {roles.readonly} TO {creator}")
    try:
        for _ in range(3):
            db_driver.rotate("db-readonly")
            assert db_secrets.current("db-readonly")["username"] in roles.login_roles("readonly")
        assert db_secrets.agree("db-readonly")
    finally:
        with db_secrets.database.admin() as conn:
            conn.execute(f"DROP ROLE {creator}")


def test_a_tier_secret_edited_onto_another_tiers_login_is_not_rotated_into_that_tier(
    db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver
) -> None:
    """Protects the read path from a hand edit: on-call pastes db-app's value into
    db-readonly (same host, a working login). The tier a secret rotates comes from its
    inventory name, never from the login AWSCURRENT names: db-readonly's rotation refuses,
    naming the tier it expected and no password, and stores nothing, rather than arming
    the app tier's other login for the read path, which db-app's next rotation would
    re-arm with a password only db-app stores."""
    import json

    from functions.shared.inventory import spec

    readonly_id = spec("db-readonly").secret_name
    masterarn = db_secrets.current("db-readonly")["masterarn"]
    pasted = {**db_secrets.current("db-app"), "masterarn": masterarn}
    # Put as Secrets Manager's console does: the new value AWSCURRENT, the old AWSPREVIOUS.
    current = db_secrets.store.describe(readonly_id).version_with("AWSCURRENT")
    version = db_secrets.store.client.put_secret_value(
        SecretId=readonly_id, SecretString=json.dumps(pasted), VersionStages=["PASTED"]
    )["VersionId"]
    db_secrets.store.promote(readonly_id, version, current)
    db_secrets.store.remove_stage(readonly_id, "PASTED", version)
    assert db_secrets.agree("db-readonly")

    with pytest.raises(RotationFailed) as refused:
        db_driver.rotate("db-readonly")
    assert not refused.value.left_pending
    assert "outside the readonly tier" in str(refused.value.cause)
    assert pasted["password"] not in str(refused.value.cause)
    assert db_secrets.current("db-readonly") == pasted

    # db-app's own rotations never break the value pasted into db-readonly.
    db_driver.rotate("db-app")
    assert db_secrets.agree("db-app")
    assert db_secrets.agree("db-readonly")


def test_test_secret_refuses_a_login_with_administrative_rights(
    db_secrets: DatabaseSecrets,
) -> None:
    """The last check before a tier's secret is switched: never hand the API an admin."""
    from functions.rotate_db.handler import lambda_handler
    from functions.shared.inventory import spec
    from functions.shared.rotation.driver import DriverContext
    from functions.shared.rotation.protocol import RotationError

    admin = db_secrets.current("db-admin")
    pending = {
        **db_secrets.current("db-readonly"),
        **{k: admin[k] for k in ("username", "password")},
    }
    name = spec("db-readonly").secret_name
    token = "c" * 36
    db_secrets.store.put_pending(name, token, pending)
    arn = db_secrets.store.describe(name).arn
    event = {"SecretId": arn, "ClientRequestToken": token, "Step": "testSecret"}

    with pytest.raises(RotationError, match="administrative rights"):
        lambda_handler(event, DriverContext(function_name="babyshield-rotate-db"))
    db_secrets.store.remove_stage(arn, "AWSPENDING", token)


def test_test_secret_refuses_a_tier_login_that_bypasses_row_level_security(
    db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver
) -> None:
    """The login a rotation switches to got BYPASSRLS by hand: with it, the read path
    would see every account. The rotation stops before the switch."""
    from psycopg import sql

    from functions.shared.rotation.driver import RotationFailed

    current = db_secrets.current("db-readonly")["username"]
    (other,) = [
        login for login in db_secrets.database.roles.login_roles("readonly") if login != current
    ]
    with db_secrets.database.admin() as conn:
        conn.execute(sql.SQL("ALTER ROLE {} BYPASSRLS").format(sql.Identifier(other)))
    try:
        with pytest.raises(RotationFailed) as failed:
            db_driver.rotate("db-readonly")
        assert failed.value.step == "testSecret"
        assert "administrative rights" in str(failed.value.__cause__)
        assert db_secrets.current("db-readonly")["username"] == current
    finally:
        with db_secrets.database.admin() as conn:
            conn.execute(sql.SQL("ALTER ROLE {} NOBYPASSRLS").format(sql.Identifier(other)))
        db_driver.cancel("db-readonly")
    assert db_secrets.agree("db-readonly")


def test_a_login_that_lifted_its_own_fences_gets_them_back_when_rotated_to(
    db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver
) -> None:
    """Any role may ALTER ROLE itself: a leaked read-only login could turn its sessions
    read-write and untimed for good. Arming it restores its tier's settings."""
    import psycopg

    leaked = db_secrets.current("db-readonly")
    template = db_secrets.tier_settings("readonly")
    # Given the leaked login has rewritten its own defaults, everywhere and per database
    with psycopg.connect(
        db_secrets.database.admin_conninfo,
        user=leaked["username"],
        password=leaked["password"],
        autocommit=True,
    ) as conn:
        conn.execute("SET default_transaction_read_only = off")  # a session may lift it
        conn.execute("ALTER ROLE CURRENT_USER SET default_transaction_read_only = off")
        conn.execute("ALTER ROLE CURRENT_USER SET statement_timeout = 0")
        conn.execute(
            f"ALTER ROLE CURRENT_USER IN DATABASE {db_secrets.database.name} "
            "SET default_transaction_read_only = off"
        )
    # When the tier rotates away from it and back (an emergency retires it meanwhile)
    db_driver.rotate("db-readonly", emergency=True)
    db_driver.rotate("db-readonly")
    # Then the login is in use again with exactly its group's settings
    again = db_secrets.current("db-readonly")
    assert again["username"] == leaked["username"]
    assert db_secrets.settings_of(leaked["username"]) == {0: template}
    with psycopg.connect(
        db_secrets.database.admin_conninfo, user=again["username"], password=again["password"]
    ) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("30s",)


def test_an_emergency_ends_the_sessions_of_the_login_it_arms(
    db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver
) -> None:
    """The login an emergency switches to was AWSPREVIOUS, which may have leaked too."""
    import psycopg

    # Given a normal rotation, and a session opened with the value now AWSPREVIOUS
    previous = db_secrets.current("db-app")
    db_driver.rotate("db-app")
    session = psycopg.connect(
        db_secrets.database.admin_conninfo,
        user=previous["username"],
        password=previous["password"],
        autocommit=True,
    )
    # When an emergency rotation arms that login again
    db_driver.rotate("db-app", emergency=True)
    assert db_secrets.current("db-app")["username"] == previous["username"]
    # Then the session opened with the old value is gone
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    session.close()
    assert db_secrets.agree("db-app")


def _console_edit(db_secrets: DatabaseSecrets, name: str, text: str) -> str:
    """An operator saves `text` as the secret's value in the console: a new version
    AWSCURRENT, the one before AWSPREVIOUS (labels moved as Secrets Manager moves them;
    moto's own PutSecretValue move loses track of a version the driver promoted)."""
    from functions.shared.inventory import spec

    store = db_secrets.store
    secret_id = spec(name).secret_name
    current = store.describe(secret_id).version_with("AWSCURRENT")
    version = store.client.put_secret_value(
        SecretId=secret_id, SecretString=text, VersionStages=["EDITED"]
    )["VersionId"]
    store.promote(secret_id, version, current)
    store.remove_stage(secret_id, "EDITED", version)
    return str(version)


@pytest.mark.parametrize("emergency", [False, True], ids=["routine", "emergency"])
def test_a_tier_rotation_replaces_a_current_value_a_console_edit_left_unparseable(
    emergency: bool, db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver
) -> None:
    """Rotation is how a malformed value gets replaced (docs/ROTATION.md), so it never
    blocks one. A console edit that breaks db-app's JSON takes the write path down on
    every API instance that starts or refetches (CredentialError, a 503); the schedule
    and `babyshield rotate db-app --emergency` must still replace it, working from
    AWSPREVIOUS, which names a working login of the tier. An emergency also retires
    the login the last good value named (API instances may still hold it cached), even
    though the promotion leaves the unparseable version as AWSPREVIOUS."""
    from functions.shared.inventory import spec

    name = "db-app"
    # Given two rotations' worth of working values: `older` (now a spare login's) and
    # `last_good`, which the edit pushes to AWSPREVIOUS
    db_driver.rotate(name)
    older = db_secrets.store.read(spec(name).secret_name, stage="AWSPREVIOUS")
    last_good = db_secrets.current(name)
    assert older is not None
    assert db_secrets.logs_in(older.value)
    _console_edit(db_secrets, name, "app_b / password pasted here by hand")

    # When the tier rotates
    try:
        db_driver.rotate(name, emergency=emergency)
    except RotationFailed as failed:
        pytest.fail(
            f"the unparseable AWSCURRENT blocks the rotation that should replace it: "
            f"{failed.step} failed with {failed.cause!r}"
        )

    # Then AWSCURRENT is a tier login the database accepts again
    after = db_secrets.current(name)
    assert after["username"] in db_secrets.database.roles.login_roles("app")
    assert after["username"] != last_good["username"]
    assert db_secrets.agree(name)
    if emergency:
        # And no value stored before it logs in, the last good one included
        assert not db_secrets.logs_in(older.value)
        assert not db_secrets.logs_in(last_good)
    else:
        # And the login in use until the edit keeps working through the overlap
        assert db_secrets.logs_in(last_good)


def test_a_tier_rotation_with_no_value_that_parses_says_which_to_put_back(
    db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver
) -> None:
    """With neither AWSCURRENT nor AWSPREVIOUS parsing, nothing names the tier's login
    in use or the admin secret: the rotation stores nothing and says what to restore,
    never "value is not JSON" alone."""
    _console_edit(db_secrets, "db-readonly", "first paste")
    _console_edit(db_secrets, "db-readonly", "second paste")
    with pytest.raises(RotationFailed) as failed:
        db_driver.rotate("db-readonly", emergency=True)
    assert failed.value.step == "createSecret"
    assert not failed.value.left_pending
    message = str(failed.value.cause)
    assert "neither AWSCURRENT nor AWSPREVIOUS" in message
    assert "AWSCURRENT again" in message


def test_an_admin_emergency_replaces_a_current_value_a_console_edit_left_unparseable(
    db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver
) -> None:
    """The admin secret follows the same rule as the tiers: an unparseable AWSCURRENT is
    replaced from AWSPREVIOUS, whose password the admin login still holds, and the
    emergency leaves that password dead."""
    last_good = db_secrets.current("db-admin")
    _console_edit(db_secrets, "db-admin", "migrator / pasted by hand")
    db_driver.rotate("db-admin", emergency=True)
    assert db_secrets.current("db-admin")["username"] == last_good["username"]
    assert db_secrets.agree("db-admin")
    assert not db_secrets.logs_in(last_good)


@pytest.mark.parametrize(
    "pasted",
    ["migrator / pasted by hand", '{"username": "babyshield_migrator"}'],
    ids=["not-json", "no-password"],
)
def test_a_tier_rotates_while_the_admin_secret_is_a_console_paste(
    pasted: str, db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver
) -> None:
    """A console edit leaves db-admin's AWSCURRENT unusable; the admin password the
    database holds is AWSPREVIOUS now. A tier's rotation (its schedule, or an emergency
    after a leak) must not wait for someone to repair the admin secret: it connects with
    the stored admin value the database accepts."""
    _console_edit(db_secrets, "db-admin", pasted)
    before = db_secrets.current("db-readonly")
    try:
        db_driver.rotate("db-readonly", emergency=True)
    except RotationFailed as failed:
        pytest.fail(f"the admin paste blocks the tier: {failed.step}: {failed.cause!r}")
    assert db_secrets.agree("db-readonly")
    assert not db_secrets.logs_in(before)
