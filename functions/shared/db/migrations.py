"""Apply the ordered migrations in `sql/`: used by `babyshield db migrate`, the test
session and the `migrate` function (a CDK trigger on deploy).

Each file runs in its own transaction with its bookkeeping row, so a failure halfway
leaves the database as it was before that file; a file that ends that transaction
itself (its own COMMIT) is an error. A file already recorded is skipped, which makes
re-applying a no-op; a recorded file whose text changed is an error, since a migration
that was applied must never be edited, and so is a new file numbered below one that
is applied. A transaction-level advisory lock serialises two migrators on the same
database. Before and after a run that has files to apply, the request tiers' roles are
checked to have no attribute or membership beyond what the migrations give them
(`check_tier_roles`); with nothing to apply the problems are logged, not raised (a
CloudFormation rollback re-runs the previous version, and refusing it would change
nothing in the database but leave the stack UPDATE_ROLLBACK_FAILED).

A failed file's error names the file, its SQLSTATE and the objects involved, never a
row: the deploy's error becomes CloudFormation's event reason, and PostgreSQL's
message for a data or constraint error quotes the values ("Failing row contains").
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from functions.shared.db.roles import PRODUCTION_ROLES, RoleNames
from functions.shared.observability import logger

if TYPE_CHECKING:
    import psycopg

DEFAULT_DIRECTORY = Path(__file__).resolve().parents[3] / "sql"
_FILE_PATTERN = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")
# An arbitrary constant: "babyshield migrations" as a 63-bit advisory lock key.
_LOCK_KEY = 0x6261627973686C64
# The deploy's pauses between connection attempts (functions/migrate/run.py): RDS drops
# connections for a moment in a reboot, failover or maintenance, and the function's
# five minutes leave room. A command on a terminal tries once and says why.
CONNECT_PAUSES_SECONDS = (1.0, 2.0, 4.0, 8.0, 15.0)
# How long a run waits for another run's migration lock before it fails in words: less
# than the migrate function's five minutes, which would end it as "Task timed out".
LOCK_WAIT_SECONDS = 240
# SQLSTATE classes whose messages may quote a row's values: data exceptions and
# integrity constraint violations.
_CLASSES_QUOTING_DATA = ("22", "23")


# Earlier texts of a migration, accepted where they were applied: 021 first took the
# lookup role without being granted it, which runs only for a superuser (the tests,
# a local stack) and failed for RDS's master user; the grant it gained changes
# nothing it did where it ran.
_FIRST_021_SHA256 = (  # a file's digest, which detect-secrets takes for a secret
    "77d41a158cbb789a4020a3f49eac910d"  # pragma: allowlist secret
    "6196386dde5d1c4f4a0a8db71c85a08f"  # pragma: allowlist secret
)
_EARLIER_CHECKSUMS: Mapping[str, frozenset[str]] = {"021": frozenset({_FIRST_021_SHA256})}


class MigrationError(Exception):
    """A migration cannot be applied; the message names the file, never a credential."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def matches(self, applied_checksum: str) -> bool:
        """Whether the text applied (by its checksum) is this file's, or an earlier
        text of it known to do the same."""
        return applied_checksum == self.checksum or applied_checksum in _EARLIER_CHECKSUMS.get(
            self.version, frozenset()
        )

    def render(self, roles: RoleNames) -> str:
        """The SQL with every role placeholder replaced by its quoted identifier."""
        names = roles.as_dict()

        def substitute(match: re.Match[str]) -> str:
            key = match.group(1)
            if key not in names:
                raise MigrationError(f"{self.name}: unknown placeholder {{{{{key}}}}}")
            return quote_identifier(names[key])

        return _PLACEHOLDER.sub(substitute, self.text)


def quote_identifier(name: str) -> str:
    # Role names are validated by RoleNames; quoting keeps them exact even so.
    return '"' + name.replace('"', '""') + '"'


def load_migrations(directory: Path = DEFAULT_DIRECTORY) -> list[Migration]:
    migrations: list[Migration] = []
    seen: set[str] = set()
    # Every name that looks like SQL, in any case: a file glob("*.sql") would skip
    # (017_x.SQL) must be refused, not left out of a run that reports success.
    candidates = [path for path in directory.iterdir() if path.name.lower().endswith(".sql")]
    for path in sorted(candidates):
        match = _FILE_PATTERN.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNN_name.sql")
        version = match.group(1)
        if version in seen:
            raise MigrationError(f"{path.name}: version {version} is used twice")
        seen.add(version)
        migrations.append(Migration(version, path.name, path.read_text(encoding="utf-8")))
    if not migrations:
        raise MigrationError(f"no migrations found in {directory}")
    return migrations


_BOOKKEEPING = b"""
CREATE TABLE IF NOT EXISTS public.schema_migrations (
    version text PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def applied_versions(conn: psycopg.Connection[tuple[object, ...]]) -> Mapping[str, str]:
    rows = conn.execute("SELECT version, checksum FROM public.schema_migrations").fetchall()
    return {str(version): str(checksum) for version, checksum in rows}


def apply_migrations(
    conninfo: str,
    *,
    directory: Path = DEFAULT_DIRECTORY,
    roles: RoleNames = PRODUCTION_ROLES,
    connect_pauses: Sequence[float] = (),
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Apply every pending migration; return the names of those applied (empty: no-op)."""
    import psycopg

    migrations = load_migrations(directory)
    applied: list[str] = []
    with _connect(conninfo, connect_pauses, sleep) as conn:
        if conn.info.server_version >= 140000:
            # The server checks every 10 s of a long statement that the migrator is
            # still there: a function that timed out mid-file must not leave its
            # statement running, holding the lock the retried deploy waits for.
            conn.execute("SET client_connection_check_interval = '10s'")
        with conn.transaction():
            _take_lock(conn)
            conn.execute(_BOOKKEEPING)
            done = applied_versions(conn)
        if any(migration.version not in done for migration in migrations):
            check_tier_roles(conn, roles)
        else:
            _log_tier_role_problems(conn, roles)
        for migration in migrations:
            with conn.transaction():
                _take_lock(conn)
                done = applied_versions(conn)
                if migration.version in done:
                    if not migration.matches(done[migration.version]):
                        raise MigrationError(
                            f"{migration.name} was applied with different contents; "
                            "add a new migration instead of editing an applied one"
                        )
                    continue
                newest = max(done, default="")
                if newest > migration.version:
                    # Databases that applied them in the other order would differ.
                    raise MigrationError(
                        f"{migration.name} is numbered below {newest}, which is applied "
                        f"already; renumber it after {newest}"
                    )
                transaction = _transaction_id(conn)
                try:
                    conn.execute(migration.render(roles).encode("utf-8"))
                except psycopg.Error as exc:
                    raise MigrationError(f"{migration.name} failed: {_failure(exc)}") from None
                if _transaction_id(conn) != transaction:
                    # Its own COMMIT ended this transaction and the lock with it: what
                    # ran before it is committed, unrecorded, and would run again.
                    raise MigrationError(
                        f"{migration.name} ends its transaction (BEGIN, COMMIT or "
                        "ROLLBACK in the file); each file runs in one transaction the "
                        "runner opens, so remove them"
                    )
                # A file may SET LOCAL ROLE; bookkeeping is the migrator's own.
                conn.execute("RESET ROLE")
                # A file that widens a tier's role rolls back with it: checked after
                # the whole run, it would stay committed and recorded as applied, and
                # the retried deploy, with nothing left to apply, would go through.
                check_tier_roles(conn, roles)
                conn.execute(
                    "INSERT INTO public.schema_migrations (version, name, checksum) "
                    "VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
            applied.append(migration.name)
    return applied


def _take_lock(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """The migration lock for this transaction, waited for at most LOCK_WAIT_SECONDS;
    the transaction's own lock_timeout is the session's again once it is held."""
    import psycopg
    from psycopg import sql

    wait = sql.Literal(f"{int(LOCK_WAIT_SECONDS * 1000)}ms")
    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(wait))
    try:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
    except psycopg.errors.LockNotAvailable:
        raise MigrationError(
            f"another migration run holds the lock: waited {LOCK_WAIT_SECONDS} s "
            "(a deploy running beside this one, or a session left in a migration)"
        ) from None
    conn.execute("SET LOCAL lock_timeout TO DEFAULT")


def _connect(
    conninfo: str, pauses: Sequence[float], sleep: Callable[[float], None]
) -> psycopg.Connection[tuple[object, ...]]:
    """A connection, tried again after a pause while the server is unreachable or drops
    it; refused credentials are final (another try would only wait longer)."""
    import psycopg

    from functions.shared.db.credentials import is_authentication_failure

    for pause in (*pauses, None):
        try:
            return psycopg.connect(conninfo, autocommit=True)
        except psycopg.OperationalError as exc:
            if pause is None or is_authentication_failure(exc):
                raise
            # The message names the host and port, never the password.
            logger.warning(
                "database connection failed; trying again",
                extra={"error": type(exc).__name__, "pause_seconds": pause},
            )
            sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover


def _failure(exc: psycopg.Error) -> str:
    """What failed, for a deploy's error: the SQLSTATE and the objects named, and the
    server's message unless it may quote a row's values."""
    state = exc.sqlstate or "unknown"
    diag = exc.diag
    parts = [f"{type(exc).__name__} (SQLSTATE {state})"]
    if not state.startswith(_CLASSES_QUOTING_DATA) and diag.message_primary:
        parts.append(diag.message_primary)
    objects = [
        f"{label} {value}"
        for label, value in (
            ("table", diag.table_name),
            ("column", diag.column_name),
            ("constraint", diag.constraint_name),
        )
        if value
    ]
    if objects:
        parts.append(", ".join(objects))
    return ": ".join(parts)


def _log_tier_role_problems(conn: psycopg.Connection[tuple[object, ...]], roles: RoleNames) -> None:
    """With nothing to apply, a refusal would change nothing in the database (and fail
    a CloudFormation rollback): the problems go to the log, and `babyshield audit`."""
    problems = tier_role_problems(conn, roles)
    if problems:
        logger.error(
            "request-tier roles can do more than the migrations grant",
            extra={"problems": problems},
        )


def _transaction_id(conn: psycopg.Connection[tuple[object, ...]]) -> object:
    row = conn.execute("SELECT pg_current_xact_id()").fetchone()
    return None if row is None else row[0]


# In the order check_tier_roles selects them.
_ROLE_ATTRIBUTES = ("SUPERUSER", "BYPASSRLS", "REPLICATION", "CREATEDB", "CREATEROLE")


def check_tier_roles(conn: psycopg.Connection[tuple[object, ...]], roles: RoleNames) -> None:
    """Refuse request-tier roles that can do more than the migrations grant them.

    Roles are cluster-wide, and a migration reuses one that exists (a shared server,
    a local cluster from an earlier run) with what it had: a read-only login with
    BYPASSRLS would read every account, one in pg_write_all_data could write.
    Checked before every run that applies a file and after each file, in its
    transaction, so a role changed by hand (or by a file) stops the deploy instead
    of serving requests (and `babyshield audit` names it whenever it runs)."""
    problems = tier_role_problems(conn, roles)
    if problems:
        raise MigrationError(
            "request-tier roles can do more than the migrations grant: "
            + "; ".join(problems)
            + " (take it away with ALTER ROLE ... / REVOKE ... FROM ..., then migrate again)"
        )


def tier_role_problems(conn: psycopg.Connection[tuple[object, ...]], roles: RoleNames) -> list[str]:
    """The request-tier roles' attributes and memberships beyond the migrations': the
    tiers' logins belong to their tier's group and nothing else; the groups and the
    lookup role belong to nothing, cannot log in, and hold no attribute that widens
    what they reach."""
    allowed = {
        roles.readonly_a: {roles.readonly},
        roles.readonly_b: {roles.readonly},
        roles.app_a: {roles.app},
        roles.app_b: {roles.app},
        roles.readonly: set(),
        roles.app: set(),
        roles.auth_lookup: set(),
    }
    names = sorted(allowed)
    problems: list[str] = []
    with conn.transaction():
        found = conn.execute(
            "SELECT rolname, rolcanlogin, rolsuper, rolbypassrls, rolreplication, rolcreatedb, "
            "rolcreaterole "
            "FROM pg_catalog.pg_roles WHERE rolname = ANY(%s) ORDER BY rolname",
            (names,),
        ).fetchall()
        memberships = conn.execute(
            "SELECT m.rolname, g.rolname FROM pg_catalog.pg_auth_members AS a "
            "JOIN pg_catalog.pg_roles AS m ON m.oid = a.member "
            "JOIN pg_catalog.pg_roles AS g ON g.oid = a.roleid "
            "WHERE m.rolname = ANY(%s) ORDER BY 1, 2",
            (names,),
        ).fetchall()
    # The groups and the lookup role are NOLOGIN (sql/001): one given LOGIN is a
    # credential outside the rotated _a/_b pair, and the lookup role reads every hash.
    never_login = {roles.readonly, roles.app, roles.auth_lookup}
    for name, can_login, *flags in found:
        extra = [label for label, on in zip(_ROLE_ATTRIBUTES, flags, strict=True) if on]
        if can_login and name in never_login:
            extra.insert(0, "LOGIN")
        if extra:
            problems.append(f"{name} has {', '.join(extra)}")
    for member, group in memberships:
        if group not in allowed[str(member)]:
            problems.append(f"{member} is a member of {group}")
    return problems
