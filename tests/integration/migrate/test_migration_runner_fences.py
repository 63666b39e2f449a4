"""The migration runner (functions/shared/db/migrations.py) and the deploy-time
`migrate` function, against the real PostgreSQL and moto over HTTP: files that end
their own transaction, tier roles that can do more than the migrations grant, files
out of order or misnamed, racing runners, lost connections, lock timeouts, event
shapes, and no password shown.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from functions.migrate import handler as migrate_handler
from functions.migrate import run as migrate_run
from functions.shared import names
from functions.shared.db.migrations import (
    DEFAULT_DIRECTORY,
    MigrationError,
    apply_migrations,
    load_migrations,
)
from functions.shared.db.roles import RoleNames
from ops.apigw import LocalLambdaContext
from tests.support.postgres import admin_secret_value, fresh_database
from tests.support.tcp_proxy import TcpProxy

REPO = Path(__file__).resolve().parents[3]
SQL_FILES = sorted(p.name for p in DEFAULT_DIRECTORY.glob("*.sql"))


def copy_migrations(target: Path, *, upto: str | None = None) -> Path:
    """The real sql/ files (those up to and including `upto`) in `target`."""
    target.mkdir(parents=True, exist_ok=True)
    for name in SQL_FILES:
        shutil.copy(DEFAULT_DIRECTORY / name, target / name)
        if name == upto:
            break
    return target


def table_exists(conninfo: str, name: str) -> bool:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def recorded_versions(conninfo: str) -> list[str]:
    with psycopg.connect(conninfo) as conn:
        return [
            str(r[0])
            for r in conn.execute("SELECT version FROM public.schema_migrations ORDER BY version")
        ]


def migrate_context() -> LocalLambdaContext:
    return LocalLambdaContext(
        function_name="babyshield-migrate", log_group_name="/aws/lambda/babyshield-migrate"
    )


@pytest.fixture
def fresh(pg_cluster: str) -> Iterator[tuple[str, RoleNames]]:
    with fresh_database(pg_cluster) as pair:
        yield pair


def _store_admin_secret(aws: str, conninfo: str, *, password: str | None = None) -> None:
    value = admin_secret_value(conninfo, password=password)
    boto3.client("secretsmanager", endpoint_url=aws).create_secret(
        Name=names.secret_name("db-admin"), SecretString=json.dumps(value)
    )


def point_function_at(monkeypatch: pytest.MonkeyPatch, directory: Path, roles: RoleNames) -> None:
    """The migrate handler as the function version whose asset ships `directory` as sql/."""
    monkeypatch.setattr(
        migrate_run, "apply_migrations", functools.partial(apply_migrations, directory=directory)
    )
    monkeypatch.setattr(
        migrate_handler, "run_migrations", functools.partial(migrate_run.run_migrations, roles)
    )


@pytest.fixture
def deployed_function(
    aws: str,
    fresh: tuple[str, RoleNames],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> tuple[str, RoleNames, Path]:
    """The real migrate handler reading the db-admin secret from moto, pointed at a fresh
    database, with this session's role prefix and a copy of sql/ the test may extend."""
    conninfo, roles = fresh
    monkeypatch.setenv("BABYSHIELD_ENV", "local")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    _store_admin_secret(aws, conninfo)
    directory = tmp_path / "sql"
    directory.mkdir()
    point_function_at(monkeypatch, directory, roles)
    return conninfo, roles, directory


def test_a_file_that_commits_itself_is_refused_naming_it(
    fresh: tuple[str, RoleNames], tmp_path: Path
):
    """A migration wrapped in BEGIN/COMMIT ends the runner's per-file transaction (and
    its lock) from inside: the run stops there, naming the file and why, and records
    nothing of it. (What ran before its COMMIT is committed: only parsing the file
    could refuse it sooner; every file in sql/ runs through this fence in the tests.)"""
    conninfo, roles = fresh
    directory = copy_migrations(tmp_path)
    (directory / "097_wrapped.sql").write_text(
        "BEGIN;\nCREATE TABLE public.wrapped_half (x int);\nCOMMIT;\n"
        "CREATE TABLE public.wrapped_rest (x int);\n"
    )
    with pytest.raises(MigrationError, match=r"097_wrapped\.sql ends its transaction"):
        apply_migrations(conninfo, directory=directory, roles=roles)
    assert "097" not in recorded_versions(conninfo)


@pytest.mark.parametrize(
    "change",
    [
        "ALTER ROLE {login} BYPASSRLS",
        "ALTER ROLE {login} CREATEDB",
        "GRANT pg_write_all_data TO {login}",
        "GRANT pg_read_all_data TO {group}",
    ],
)
def test_a_tier_role_that_can_do_more_is_refused_before_and_after_a_run(
    fresh: tuple[str, RoleNames],
    change: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
):
    """Roles are cluster-wide and a migration adopts one that exists with what it has:
    a read-only login with BYPASSRLS read every account. Such a role is refused before
    anything is applied, naming it; and one changed by hand after a run stops the next
    run that has a file to apply. A run with nothing to apply (CloudFormation rolling
    back to the previous version) logs it as an error and changes nothing."""
    conninfo, roles = fresh
    statement = change.format(
        login=sql.Identifier(roles.readonly_a).as_string(None),
        group=sql.Identifier(roles.readonly).as_string(None),
    )
    # Existing before the first run: refused, nothing applied
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(roles.readonly)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(roles.readonly_a)))
        conn.execute(statement.encode())
    with pytest.raises(MigrationError, match="request-tier roles can do more") as refused:
        apply_migrations(conninfo, roles=roles)
    assert roles.readonly_a in str(refused.value) or roles.readonly in str(refused.value)
    assert recorded_versions(conninfo) == []
    # Taken away: the run goes through
    undo = (
        statement.replace(" BYPASSRLS", " NOBYPASSRLS")
        .replace(" CREATEDB", " NOCREATEDB")
        .replace("GRANT ", "REVOKE ")
        .replace(" TO ", " FROM ")
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(undo.encode())
    assert apply_migrations(conninfo, roles=roles)
    # Changed by hand afterwards: a run with nothing to apply says so in an error line
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(statement.encode())
    assert apply_migrations(conninfo, roles=roles) == []
    assert any(
        record.levelno == logging.ERROR and "can do more" in record.getMessage()
        for record in caplog.records
    )
    # and the next deploy with a migration stops, applying nothing
    directory = copy_migrations(tmp_path / "sql")
    (directory / "099_next.sql").write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match="request-tier roles can do more"):
        apply_migrations(conninfo, directory=directory, roles=roles)
    assert "099" not in recorded_versions(conninfo)


# --- the lookup and group roles after someone altered them by hand ---------------------


@pytest.mark.parametrize("which", ["auth_lookup", "app", "readonly"])
def test_a_group_or_lookup_role_given_login_by_hand_stops_the_next_deploy(
    fresh: tuple[str, RoleNames], tmp_path: Path, which: str
):
    """A group role given LOGIN is a tier login no rotation ever retires; the lookup
    role given LOGIN reads and may write every password hash. The next deploy stops,
    naming the role, as it does for BYPASSRLS."""
    conninfo, roles = fresh
    directory = copy_migrations(tmp_path / "sql")
    apply_migrations(conninfo, directory=directory, roles=roles)
    role = getattr(roles, which)
    database = str(conninfo_to_dict(conninfo)["dbname"])
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(role)))
        if which == "auth_lookup":
            conn.execute(
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                    sql.Identifier(database), sql.Identifier(role)
                )
            )
        conn.execute(
            "INSERT INTO public.users (id, email, password_hash, role) "
            "VALUES (%s, %s, 'StoredHashSentinel', 'admin')",
            (uuid.uuid4(), f"{uuid.uuid4().hex[:8]}@example.com"),
        )
    try:
        # What such a login reaches (the test server trusts loopback logins).
        with psycopg.connect(make_conninfo(conninfo, user=role), autocommit=True) as conn:
            if which == "auth_lookup":
                rows = conn.execute("SELECT password_hash FROM public.users").fetchall()
                assert ("StoredHashSentinel",) in rows
            else:
                assert conn.execute("SELECT count(*) FROM public.recalls").fetchone()

        # The next deploy
        (directory / "097_next.sql").write_text("SELECT 1;\n")
        try:
            applied = apply_migrations(conninfo, directory=directory, roles=roles)
        except MigrationError as exc:
            refused = str(exc)
        else:
            pytest.fail(f"{role} can log in and the deploy applied {applied}")
        assert role in refused
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(role)))
            if which == "auth_lookup":
                conn.execute(
                    sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
                        sql.Identifier(database), sql.Identifier(role)
                    )
                )


# --- a CloudFormation rollback runs the previous version again -------------------------


def test_a_rollback_to_the_previous_version_finishes_beside_a_hand_altered_role(
    deployed_function: tuple[str, RoleNames, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
):
    """A deploy refused for a role altered by hand is rolled back by CloudFormation,
    which runs the previous function version again with nothing to apply. That run
    finishes, so the stack rolls back instead of ending UPDATE_ROLLBACK_FAILED; the
    refusal of the deploy itself stands."""
    conninfo, roles, current = deployed_function
    copy_migrations(current)
    previous = copy_migrations(
        tmp_path / "previous", upto="015_app_tier_users_and_recall_times.sql"
    )

    # The previous deploy
    point_function_at(monkeypatch, previous, roles)
    assert migrate_handler.lambda_handler({}, migrate_context())["applied"]
    # Altered by hand afterwards
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(roles.readonly_a)))

    # The next deploy: refused, naming the role
    point_function_at(monkeypatch, current, roles)
    with pytest.raises(MigrationError, match="request-tier roles can do more"):
        migrate_handler.lambda_handler({}, migrate_context())

    # CloudFormation's rollback of the trigger: the previous version, nothing pending
    point_function_at(monkeypatch, previous, roles)
    try:
        answer = migrate_handler.lambda_handler({}, migrate_context())
    except MigrationError as exc:
        pytest.fail(f"the rollback's invocation failed (UPDATE_ROLLBACK_FAILED): {exc}")
    assert answer == {"applied": []}


def test_a_migration_numbered_below_an_applied_one_is_refused(
    fresh: tuple[str, RoleNames], tmp_path: Path
):
    """sql/ is "ordered": a fresh database applies 097 before 098. A 097 that
    arrives after 098 was deployed (two branches, merged in the other order) was
    applied after it without a word, so production and every fresh database (tests,
    a rebuild) ran the two in different orders. It is refused, naming both."""
    conninfo, roles = fresh
    directory = copy_migrations(tmp_path)
    (directory / "098_later.sql").write_text("CREATE TABLE public.later (x int);\n")
    apply_migrations(conninfo, directory=directory, roles=roles)

    (directory / "097_earlier.sql").write_text("CREATE TABLE public.earlier (x int);\n")
    try:
        applied = apply_migrations(conninfo, directory=directory, roles=roles)
    except MigrationError as exc:
        refused = str(exc)
    else:
        pytest.fail(f"applied out of order, after 098, without a word: {applied}")
    assert "097_earlier.sql" in refused
    assert "098" in refused


def test_a_migration_spelled_dot_upper_sql_is_refused_not_skipped(
    fresh: tuple[str, RoleNames], tmp_path: Path
):
    """`097_add_index.SQL` was neither applied nor refused (the names were checked only
    for files a `*.sql` glob picked), and the deploy reported success with the schema
    change missing. Any name that looks like SQL is checked: it is refused, named,
    before anything is applied."""
    conninfo, roles = fresh
    directory = copy_migrations(tmp_path)
    (directory / "097_add_index.SQL").write_text("CREATE TABLE public.upper_ext (x int);\n")

    with pytest.raises(MigrationError, match=r"097_add_index\.SQL"):
        apply_migrations(conninfo, directory=directory, roles=roles)
    # Refused on reading the folder, before the database is touched
    assert not table_exists(conninfo, "public.schema_migrations")


@pytest.mark.parametrize(
    "name", ["17_short.sql", "0017_long.sql", "097-dash.sql", "097_Upper.sql", "097_a.b.sql"]
)
def test_odd_file_names_are_refused_naming_the_file(
    fresh: tuple[str, RoleNames], tmp_path: Path, name: str
):
    """A misnamed .sql file stops the run before anything is applied."""
    conninfo, roles = fresh
    directory = copy_migrations(tmp_path)
    (directory / name).write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match=name.replace(".", r"\.")):
        apply_migrations(conninfo, directory=directory, roles=roles)
    assert not table_exists(conninfo, "public.schema_migrations")


def test_a_run_waiting_too_long_for_another_runs_lock_says_so(
    fresh: tuple[str, RoleNames], monkeypatch: pytest.MonkeyPatch
):
    """A migrator that never lets go (a session left open by hand, a run whose client
    died mid-file) holds the migration lock: the next deploy must fail in words,
    naming the wait, before the function's own timeout ends it as "Task timed out"."""
    import functions.shared.db.migrations as migrations

    conninfo, roles = fresh
    monkeypatch.setattr(migrations, "LOCK_WAIT_SECONDS", 1)
    holder = psycopg.connect(conninfo)
    try:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (migrations._LOCK_KEY,))
        started = time.monotonic()
        with pytest.raises(MigrationError, match="another migration run holds the lock") as held:
            apply_migrations(conninfo, roles=roles)
        waited = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert 0.9 <= waited < 30
    assert "1 s" in str(held.value)
    assert recorded_versions_or_none(conninfo) is None
    # Let go: the same run goes through.
    assert apply_migrations(conninfo, roles=roles)


def test_a_run_whose_client_died_mid_file_releases_the_lock_for_the_retry(
    fresh: tuple[str, RoleNames], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The migrate function timed out (or was killed) in a long file: its statement
    must not run on in the server, holding the lock the retried deploy waits for. The
    server checks its client is still there every 10 s of a statement."""
    import functions.shared.db.migrations as migrations

    conninfo, roles = fresh
    directory = copy_migrations(tmp_path / "sql")
    # Slow only for the run that dies (its application_name), instant for the retry.
    (directory / "099_slow.sql").write_text(
        "SELECT pg_sleep(120) WHERE current_setting('application_name') = 'doomed';\n"
    )
    doomed = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path;"
            "from functions.shared.db.migrations import apply_migrations;"
            "from functions.shared.db.roles import RoleNames;"
            "apply_migrations(sys.argv[1], directory=Path(sys.argv[2]),"
            " roles=RoleNames.with_prefix(sys.argv[3]))",
            make_conninfo(conninfo, application_name="doomed"),
            str(directory),
            roles.prefix,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + 60
        while not _sleeping_in(conninfo, "doomed"):
            assert doomed.poll() is None, "the doomed run ended by itself"
            assert time.monotonic() < deadline, "the doomed run never reached its slow file"
            time.sleep(0.2)
        doomed.kill()
        doomed.wait(10)
        # Far less than the 120 s the orphan statement would hold the lock.
        monkeypatch.setattr(migrations, "LOCK_WAIT_SECONDS", 40)
        applied = apply_migrations(conninfo, directory=directory, roles=roles)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    assert applied == ["099_slow.sql"]
    assert not _sleeping_in(conninfo, "doomed")


def _sleeping_in(conninfo: str, application: str) -> bool:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = %s AND query LIKE '%%pg_sleep%%'",
            (application,),
        ).fetchone()
    return bool(row and row[0])


def recorded_versions_or_none(conninfo: str) -> list[str] | None:
    """The recorded versions, or None before the bookkeeping table exists."""
    if not table_exists(conninfo, "public.schema_migrations"):
        return None
    return recorded_versions(conninfo)


def test_two_runners_racing_apply_each_file_once(fresh: tuple[str, RoleNames], tmp_path: Path):
    """Two deploys at once on one database: each file (one of them slow and not
    idempotent) is applied by exactly one runner, and both finish without an error."""
    conninfo, roles = fresh
    directory = copy_migrations(tmp_path)
    (directory / "097_slow.sql").write_text(
        "SELECT pg_sleep(0.5);\nCREATE TABLE public.slow_once (x int);\n"
    )
    (directory / "098_next.sql").write_text("CREATE TABLE public.next_once (x int);\n")
    barrier = threading.Barrier(2)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def runner() -> None:
        barrier.wait()
        try:
            results.append(apply_migrations(conninfo, directory=directory, roles=roles))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=runner) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    assert errors == []
    assert len(results) == 2
    everything = [*results[0], *results[1]]
    assert sorted(everything) == sorted(m.name for m in load_migrations(directory))
    assert len(set(everything)) == len(everything)
    assert recorded_versions(conninfo) == [m.version for m in load_migrations(directory)]


# --- a database that drops connections -------------------------------------------------


class CutAfterCommit(TcpProxy):
    """Lets the COMMIT of the file carrying `marker` reach the server, then cuts the
    connection before the answer comes back: the client cannot know it committed."""

    def __init__(self, target_host: str, target_port: int, marker: bytes):
        super().__init__(target_host, target_port)
        self.marker = marker
        self.cut = threading.Event()

    def relay(self, data: bytes, sink: Any, *, upstream: bool, state: dict[str, Any]) -> bool:
        if upstream and self.marker in data:
            state["armed"] = True
        if upstream and state.get("armed") and b"COMMIT\x00" in data:
            sink.sendall(data)
            time.sleep(0.3)  # the server reads and commits before it sees the close
            self.cut.set()
            return False
        sink.sendall(data)
        return True


class DropsFirstConnections(TcpProxy):
    """Closes the first `drops` connections as soon as the client speaks (a database
    restarting or failing over), then relays normally. Counts connections seen."""

    def __init__(self, target_host: str, target_port: int, drops: int):
        super().__init__(target_host, target_port)
        self.drops = drops
        self.connections = 0

    def relay(self, data: bytes, sink: Any, *, upstream: bool, state: dict[str, Any]) -> bool:
        if upstream and "seen" not in state:
            state["seen"] = True
            self.connections += 1
            state["drop"] = self.connections <= self.drops
        if state.get("drop"):
            return False
        sink.sendall(data)
        return True


def test_connection_lost_after_commit_is_not_reapplied_or_reported_applied(
    fresh: tuple[str, RoleNames], tmp_path: Path
):
    """The COMMIT of 097 reaches the server, its answer never comes back: the
    run fails (it does not claim success), and the retry neither re-applies 097 (not
    idempotent) nor stops; it goes on with 098."""
    conninfo, roles = fresh
    directory = copy_migrations(tmp_path)
    (directory / "097_once_only.sql").write_text("CREATE TABLE public.once_only_marker (x int);\n")
    (directory / "098_after.sql").write_text("CREATE TABLE public.after_once (x int);\n")
    parts = conninfo_to_dict(conninfo)
    proxy = CutAfterCommit(
        str(parts.get("host", "127.0.0.1")), int(parts.get("port") or 5432), b"once_only_marker"
    )
    try:
        with pytest.raises(psycopg.OperationalError):
            apply_migrations(
                make_conninfo(conninfo, host="127.0.0.1", port=proxy.port),
                directory=directory,
                roles=roles,
            )
    finally:
        proxy.close()
    assert proxy.cut.is_set()
    assert table_exists(conninfo, "public.once_only_marker")
    assert "097" in recorded_versions(conninfo)

    again = apply_migrations(conninfo, directory=directory, roles=roles)
    assert again == ["098_after.sql"]


def test_a_connection_dropped_once_is_tried_again(
    aws: str,
    fresh: tuple[str, RoleNames],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
):
    """RDS drops connections for a moment during a reboot, a Multi-AZ failover or a
    maintenance action. The migrate function tries again within its budget: a database
    that drops the first connection and answers the second is migrated, and the deploy
    goes through."""
    conninfo, roles = fresh
    monkeypatch.setenv("BABYSHIELD_ENV", "local")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    parts = conninfo_to_dict(conninfo)
    proxy = DropsFirstConnections(
        str(parts.get("host", "127.0.0.1")), int(parts.get("port") or 5432), drops=1
    )
    try:
        _store_admin_secret(aws, make_conninfo(conninfo, host="127.0.0.1", port=proxy.port))
        point_function_at(monkeypatch, copy_migrations(tmp_path / "sql"), roles)
        try:
            answer = migrate_handler.lambda_handler({}, migrate_context())
        except psycopg.OperationalError as exc:
            pytest.fail(
                f"one dropped connection failed the deploy after "
                f"{proxy.connections} attempt(s): {exc}"
            )
    finally:
        proxy.close()
    assert answer["applied"] == SQL_FILES
    assert proxy.connections >= 2


def test_deploy_retried_after_a_lock_timeout_succeeds_through_the_handler(
    deployed_function: tuple[str, RoleNames, Path],
):
    """016 waits at most 5 s for a lock held by a long transaction on users: the
    function fails with one line naming the file (what the CDK trigger hands to
    CloudFormation), leaves nothing of 016, and the retried deploy applies it."""
    conninfo, _, directory = deployed_function
    copy_migrations(directory, upto="015_app_tier_users_and_recall_times.sql")
    assert migrate_handler.lambda_handler({}, migrate_context())["applied"]
    copy_migrations(directory)

    blocker = psycopg.connect(conninfo)
    try:
        blocker.execute("LOCK TABLE public.users IN ROW EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(MigrationError) as failed:
            migrate_handler.lambda_handler({}, migrate_context())
        waited = time.monotonic() - started
    finally:
        blocker.rollback()
        blocker.close()

    assert 4 <= waited < 60
    message = str(failed.value)
    assert message.startswith("016_admin_list_order.sql failed:")
    assert "lock timeout" in message
    assert "016" not in recorded_versions(conninfo)
    assert not table_exists(conninfo, "public.users_created_at_id_idx")

    retried = migrate_handler.lambda_handler({}, migrate_context())
    assert retried == {"applied": [name for name in SQL_FILES if name >= "016"]}
    assert table_exists(conninfo, "public.users_created_at_id_idx")


def test_the_function_never_shows_the_admin_password(
    aws: str,
    scram_cluster: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
):
    """A wrong admin password (server checks it) and an unreachable server (tried six
    times, without the pauses here): the error handed back, its chain, the traceback
    and every log line hold no password."""
    monkeypatch.setenv("BABYSHIELD_ENV", "local")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setattr(migrate_run, "CONNECT_PAUSES_SECONDS", (0.0,) * 5)
    password = "Pw-Sentinel-7f3a9c'\" =x"
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    for target in (scram_cluster, "host=127.0.0.1 port=9 dbname=none user=nobody"):
        if seen:
            boto3.client("secretsmanager", endpoint_url=aws).delete_secret(
                SecretId=names.secret_name("db-admin"), ForceDeleteWithoutRecovery=True
            )
        _store_admin_secret(aws, target, password=password)
        with pytest.raises(Exception) as failed:  # noqa: PT011 - any failure, checked below
            migrate_handler.lambda_handler({}, migrate_context())
        seen.append("".join(traceback.format_exception(failed.value)))
        exc: BaseException | None = failed.value
        while exc is not None:
            seen.append(repr(exc) + str(exc))
            exc = exc.__cause__ or exc.__context__
    out = capsys.readouterr()
    seen += [out.out, out.err, caplog.text]
    assert all("Sentinel" not in text for text in seen)


# --- what a failed file puts into the deploy's error ------------------------------------


def test_a_failed_files_error_names_no_row_of_the_table(
    deployed_function: tuple[str, RoleNames, Path],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
):
    """A migration that trips a constraint on a row of `users` fails the deploy naming
    the file and the failure. The error (which the CDK trigger hands to CloudFormation's
    stack events), its trace and the logs hold nothing of the row: no e-mail, no
    password hash."""
    conninfo, _, directory = deployed_function
    copy_migrations(directory)
    assert migrate_handler.lambda_handler({}, migrate_context())["applied"] == SQL_FILES

    hash_value = "$argon2id$v=19$m=65536,t=3,p=4$SaltSentinel$HashSentinelQ9x"
    email = f"victim-{uuid.uuid4().hex[:8]}@example.com"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.users (id, email, password_hash, role) "
            "VALUES (%s, %s, %s, 'admin')",
            (uuid.uuid4(), email, hash_value),
        )
    # The next deploy's data migration (run as the migrating login, as every file
    # is) trips the lower-case e-mail CHECK on that row.
    (directory / "097_normalise_emails.sql").write_text(
        "UPDATE public.users SET email = upper(email);\n"
    )
    caplog.set_level(logging.DEBUG)

    with pytest.raises(MigrationError) as failed:
        migrate_handler.lambda_handler({}, migrate_context())

    # What the trigger hands CloudFormation: errorMessage, then the trace.
    reason = str(failed.value) + "\n" + "".join(traceback.format_exception(failed.value))
    out = capsys.readouterr()
    shown = reason + out.out + out.err + caplog.text
    assert "097_normalise_emails.sql" in str(failed.value)
    assert "HashSentinel" not in shown, "the password hash reached the deploy's error"
    assert email.upper() not in shown, "an account's e-mail reached the deploy's error"


def test_the_trigger_payload_and_a_cloudformation_shaped_event_both_just_migrate(
    deployed_function: tuple[str, RoleNames, Path],
):
    """The CDK trigger invokes the function with no payload (its provider answers
    Delete itself); an event of any other shape changes nothing: a second run is a
    no-op and the result is the same JSON-serialisable answer."""
    conninfo, _, directory = deployed_function
    copy_migrations(directory)
    first = migrate_handler.lambda_handler({}, migrate_context())
    assert first["applied"] == SQL_FILES
    for event in (
        {"RequestType": "Delete", "ResourceProperties": {}},
        {"RequestType": "Bogus"},
        {},
    ):
        assert migrate_handler.lambda_handler(event, migrate_context()) == {"applied": []}
    json.dumps(first)
    assert len(recorded_versions(conninfo)) == len(SQL_FILES)


@pytest.mark.parametrize("tier", ["readonly", "app"])
def test_a_request_tier_cannot_touch_the_bookkeeping(migrated_db: Any, tier: str):
    """SQL injected on a request tier's connection cannot read or rewrite
    schema_migrations (deleting a row would make the next deploy re-run that file)."""
    for statement in (
        "SELECT count(*) FROM public.schema_migrations",
        "DELETE FROM public.schema_migrations WHERE version = '016'",
        "UPDATE public.schema_migrations SET checksum = 'x'",
    ):
        with psycopg.connect(migrated_db.tier(tier), autocommit=True) as conn:
            # Past the read-only tier's second fence: the grants alone must refuse.
            conn.execute("SET default_transaction_read_only = off")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    assert "016" in recorded_versions(migrated_db.admin_conninfo)
