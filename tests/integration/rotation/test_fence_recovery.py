"""Rotation after a failure in a fence, a first deploy's group-named value, a pool
on a fenced login, a malformed previous value, and the JWT guard's clock locally.

Every test runs the rotation handlers through the local driver against moto over
HTTP and the scram-sha-256 PostgreSQL cluster of the rotation fixtures.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import psycopg.sql
import pytest

from functions.shared.inventory import spec
from functions.shared.rotation.driver import LocalRotationDriver, RotationFailed, seed_secret
from functions.shared.rotation.store import SecretStore
from tests.integration.rotation.database_fixtures import DatabaseSecrets
from tests.integration.rotation.state import paste_then_restore


def _can_login(db_secrets: DatabaseSecrets, role: str) -> bool:
    with db_secrets.database.admin() as conn:
        row = conn.execute(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (role,)
        ).fetchone()
    assert row is not None
    return bool(row[0])


def _set_login(db_secrets: DatabaseSecrets, role: str, allowed: bool) -> None:
    with db_secrets.database.admin() as conn:
        conn.execute(
            psycopg.sql.SQL("ALTER ROLE {} {}").format(
                psycopg.sql.Identifier(role), psycopg.sql.SQL("LOGIN" if allowed else "NOLOGIN")
            )
        )


# --- rotate_db: the fence and the bootstrap value that names the group role ----------


@pytest.mark.parametrize("admin_holds_the_group", [True, False], ids=["as-in-aws", "as-locally"])
def test_an_emergency_from_the_bootstrap_value_finishes_and_keeps_the_group_nologin(
    admin_holds_the_group: bool, db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver
) -> None:
    """A tier's secret starts on the group role's name (cdk/secrets.py _DB_USERS). An
    emergency as its first rotation retires AWSPREVIOUS, i.e. the group role: retire()
    wraps it in fenced_off(), whose exit runs ALTER ROLE <group> LOGIN.

    As in AWS, where RDS's master user ran the migrations and so holds ADMIN OPTION on
    the group it created (PostgreSQL 16+): the tier's NOLOGIN group becomes a login role
    with a password nobody holds, tier_group() then finds no group for either login, and
    every later rotation of the tier fails ("no second login to alternate to").
    As locally, where the admin holds ADMIN OPTION on the four logins only (sql/007):
    finishSecret fails on "permission denied to alter role" at every retry, so the
    emergency can never finish."""
    roles = db_secrets.database.roles
    group = roles.readonly
    admin = db_secrets.current("db-admin")["username"]
    name = spec("db-readonly").secret_name
    bootstrap = {**db_secrets.current("db-readonly"), "username": group, "password": "x" * 32}
    db_secrets.store.client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    seed_secret(db_secrets.store, spec("db-readonly"), bootstrap)
    assert not _can_login(db_secrets, group)
    grant = psycopg.sql.SQL("GRANT {} TO {} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE")
    revoke = psycopg.sql.SQL("REVOKE {} FROM {}")
    if admin_holds_the_group:
        with db_secrets.database.admin() as conn:
            conn.execute(grant.format(psycopg.sql.Identifier(group), psycopg.sql.Identifier(admin)))
    try:
        try:
            db_driver.rotate("db-readonly", emergency=True)
        except RotationFailed as failed:
            pytest.fail(f"the first emergency cannot finish: {failed.step}: {failed.cause!r}")
        assert not _can_login(db_secrets, group), f"{group}, the tier's group, was given LOGIN"
        try:
            db_driver.rotate("db-readonly")
        except RotationFailed as failed:
            pytest.fail(f"the tier cannot rotate after its first emergency: {failed.cause}")
    finally:
        _set_login(db_secrets, group, False)
        if admin_holds_the_group:
            with db_secrets.database.admin() as conn:
                conn.execute(
                    revoke.format(psycopg.sql.Identifier(group), psycopg.sql.Identifier(admin))
                )


# --- rotate_db: a login an interrupted emergency left NOLOGIN -------------------------


def test_a_routine_rotation_gives_back_login_to_a_login_a_failed_emergency_fenced_off(
    db_secrets: DatabaseSecrets, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fenced_off() says "a failure leaves the login unable to log in, which a retry of
    the step repairs". Only an emergency retry does: the RUNBOOK's way out of a failed
    rotation is `--cancel`, then `babyshield rotate NAME`, and every scheduled rotation
    is routine. The routine setSecret (_arm) restores settings and password but never
    LOGIN, so testSecret fails on every later rotation of the tier."""
    from functions.rotate_db import database

    other = next(
        login
        for login in db_secrets.database.roles.login_roles("readonly")
        if login != db_secrets.current("db-readonly")["username"]
    )
    real_terminate = database.terminate_sessions

    def connection_lost_after_the_fence(conn: Any, role: str) -> int:
        ended = real_terminate(conn, role)
        raise psycopg.OperationalError("server closed the connection unexpectedly")
        return ended  # pragma: no cover

    emergency_driver = LocalRotationDriver(store=db_secrets.store, backoff_seconds=0.0)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(database, "terminate_sessions", connection_lost_after_the_fence)
            with pytest.raises(RotationFailed) as failed:
                emergency_driver.rotate("db-readonly", emergency=True)
        assert failed.value.step == "setSecret"
        assert not _can_login(db_secrets, other)
        # The RUNBOOK's step 4 for every secret but db-admin.
        emergency_driver.cancel("db-readonly")
        try:
            emergency_driver.rotate("db-readonly")
        except RotationFailed as again:
            pytest.fail(
                f"the tier's routine rotation fails for good ({again.step}: {again.cause!r}); "
                f"{other} is still NOLOGIN: {not _can_login(db_secrets, other)}"
            )
        assert db_secrets.agree("db-readonly")
    finally:
        _set_login(db_secrets, other, True)


def test_an_api_pool_on_a_fenced_login_refetches_the_secret(
    db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API's pools keep a tier's value until the database refuses it, and refetch
    once on an authentication failure (pools.with_credentials). After a routine
    rotation a warm instance still holds AWSPREVIOUS's login, by design. An emergency
    fences exactly that login (NOLOGIN); the server then answers "role ... is not
    permitted to log in", which is_authentication_failure() does not count (no SQLSTATE
    on a connection error, and the text matches neither pattern). The instance never
    refetches: every request fails although AWSCURRENT names a working login. After a
    fence that a failed step left in place, that lasts until the instance is recycled."""
    from functions.rotate_db import database
    from functions.shared.db.credentials import SecretCredentials
    from functions.shared.db.pools import with_credentials
    from functions.shared.settings import get_settings

    source = SecretCredentials(spec("db-readonly").secret_name, get_settings())
    held = source.current()["user"]  # a warm instance's cached value

    def connect(parameters: dict[str, Any]) -> str:
        with psycopg.connect(**parameters) as conn:
            row = conn.execute("SELECT current_user").fetchone()
        assert row is not None
        return str(row[0])

    db_driver.rotate("db-readonly")  # routine: the instance keeps working on `held`
    assert with_credentials(source, connect) == held
    real_terminate = database.terminate_sessions

    def connection_lost_after_the_fence(conn: Any, role: str) -> int:
        real_terminate(conn, role)
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    try:
        with monkeypatch.context() as patch:
            patch.setattr(database, "terminate_sessions", connection_lost_after_the_fence)
            with pytest.raises(RotationFailed):
                LocalRotationDriver(store=db_secrets.store, backoff_seconds=0.0).rotate(
                    "db-readonly", emergency=True
                )
        assert not _can_login(db_secrets, held)
        assert db_secrets.agree("db-readonly")  # AWSCURRENT still logs in
        try:
            now = with_credentials(source, connect)
        except psycopg.OperationalError as exc:
            pytest.fail(f"the instance did not move to AWSCURRENT: {exc}")
        assert now == db_secrets.current("db-readonly")["username"]
    finally:
        _set_login(db_secrets, held, True)


# --- rotate_db: a malformed AWSPREVIOUS -----------------------------------------------


@pytest.mark.parametrize("name", ["db-readonly", "db-admin"])
def test_a_database_rotation_is_not_blocked_by_a_malformed_previous_value(
    name: str, db_secrets: DatabaseSecrets, db_driver: LocalRotationDriver
) -> None:
    """The rule (docs/ROTATION.md): "rotation is how a malformed value gets replaced,
    so it must never block one"; finish_secret and the IAM rotator tolerate it. The new
    _refuse_stored_password() in setSecret reads AWSPREVIOUS with store.read(), which
    raises SecretValueError on it: every database rotation fails at setSecret, at
    every retry, until someone relabels the version by hand."""
    paste_then_restore(db_secrets.store, name, "postgres://pasted-without-json")
    try:
        result = db_driver.rotate(name)
    except RotationFailed as failed:
        pytest.fail(f"{failed.step} failed: {failed.cause!r}")
    assert db_secrets.store.describe(spec(name).secret_name).stages[result.version_id] == (
        "AWSCURRENT",
    )
    assert db_secrets.agree(name)


# --- rotate_jwt: the guard's clock on the local stack ------------------------------------


def test_a_routine_jwt_rotation_goes_through_once_the_window_has_passed_on_the_local_stack(
    store: SecretStore, driver: LocalRotationDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PreviousKeyStillLive dates AWSCURRENT by ListSecretVersionIds' CreatedDate
    (SecretStore.describe). moto answers that call with CreatedDate = now for every
    version, so on the local stack AWSCURRENT is always "0s old": once AWSPREVIOUS holds
    a real key (after the first rotation), every routine `babyshield rotate
    jwt-signing-key` is refused, however long ago the last one ran. (Window here: TTL
    2 s, no leeway, no cache, + 1 s slack = 3 s; the test waits 4 s.)"""
    import time

    from functions.shared.identity.jwt_keys import generate_jwt_secret_value
    from functions.shared.settings import get_settings

    monkeypatch.setenv("ACCESS_TOKEN_TTL_SECONDS", "2")
    monkeypatch.setenv("JWT_LEEWAY_SECONDS", "0")
    monkeypatch.setenv("SECRET_CACHE_SECONDS", "0")
    get_settings.cache_clear()
    name = "jwt-signing-key"
    seed_secret(store, spec(name), json.loads(generate_jwt_secret_value("ES256")))
    driver.rotate(name)  # AWSPREVIOUS now holds a real key: the seeded one
    time.sleep(4)
    try:
        driver.rotate(name)
    except RotationFailed as failed:
        pytest.fail(f"refused {4}s after the last rotation (window 3 s): {failed.cause}")
