"""PostgreSQL access for rotate_db: connect with a secret's value, change a password.

Connections go through the same `connection_parameters` as the API's pools, so
in AWS they verify the server's certificate and name (sslmode=verify-full) and
locally they do not. A secret's value never reaches a log or an exception text.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from functions.shared.db.credentials import (
    CredentialError,
    DbCredentials,
    connection_parameters,
    is_authentication_failure,
)
from functions.shared.db.roles import alternating_logins, set_login_password
from functions.shared.rotation.generate import generate_password
from functions.shared.settings import get_settings

if TYPE_CHECKING:
    import psycopg


class LoginRefused(Exception):
    """The server refused this username/password (as opposed to being unreachable)."""


def credentials(value: Mapping[str, Any]) -> DbCredentials:
    import json

    return DbCredentials.from_secret(json.dumps(dict(value)))


@contextmanager
def connect(value: Mapping[str, Any]) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """An autocommit connection as the secret's user; LoginRefused on a wrong password."""
    import psycopg

    parameters = connection_parameters(credentials(value), get_settings())
    try:
        conn = psycopg.connect(**parameters, autocommit=True)
    except psycopg.OperationalError as exc:
        if is_authentication_failure(exc):
            raise LoginRefused(str(parameters["user"])) from None
        raise
    with conn:
        yield conn


def logs_in(value: Mapping[str, Any] | None) -> bool:
    """Whether the value's username and password log in; an unreachable server raises."""
    if value is None:
        return False
    try:
        with connect(value) as conn:
            conn.execute("SELECT 1")
    except (LoginRefused, CredentialError):
        return False
    return True


def holds_password(value: Mapping[str, Any]) -> bool:
    """Whether the database already holds `value`'s password: a retried setSecret.

    A login alone cannot tell on a server that lets any password in (trust
    authentication, as on a developer's PostgreSQL): there a login with a
    password nobody holds succeeds too, so the answer is no and the password is
    set again, which is harmless. Otherwise a secret would name a password the
    database never stored, and the first server that checks would refuse it.
    """
    if not logs_in(value):
        return False
    return not logs_in({**value, "password": generate_password()})


def change_password(conn: psycopg.Connection[tuple[Any, ...]], role: str, password: str) -> None:
    """Set `role`'s password so that neither it nor the plaintext reaches the server log.

    ALTER ROLE cannot take a bound parameter, so the statement text carries the
    password in some form. It carries a SCRAM-SHA-256 verifier computed here by
    libpq (PQencryptPasswordConn), never the plaintext: a logged verifier of a
    190-bit random password cannot be turned back into a login. On top of that,
    statement logging is switched off for this transaction where the role may do
    so (superusers, or roles granted SET on log_statement).
    """
    import psycopg

    with conn.transaction():
        try:
            with conn.transaction():
                conn.execute("SET LOCAL log_statement = 'none'")
        except psycopg.errors.InsufficientPrivilege:
            pass
        set_login_password(conn, role, password)


# How long one session may take to end once signalled (pg_terminate_backend's timeout).
TERMINATE_WAIT_MS = 5000


class SessionsSurvived(Exception):
    """A session of a login being fenced off was still running after the wait."""


def terminate_sessions(conn: psycopg.Connection[tuple[Any, ...]], role: str) -> int:
    """End every session of `role` except this one, waiting until each has ended (a
    signalled backend may still finish the statement it is running); returns how many
    were ended. SessionsSurvived if one outlives TERMINATE_WAIT_MS."""
    rows = conn.execute(
        "SELECT pg_terminate_backend(pid, %s) FROM pg_stat_activity "
        "WHERE usename = %s AND pid <> pg_backend_pid()",
        (TERMINATE_WAIT_MS, role),
    ).fetchall()
    if not all(ended for (ended,) in rows):
        raise SessionsSurvived(f"a session of {role} did not end within {TERMINATE_WAIT_MS} ms")
    return len(rows)


def can_login(conn: psycopg.Connection[tuple[Any, ...]], role: str) -> bool:
    row = conn.execute(
        "SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = %s", (role,)
    ).fetchone()
    return bool(row and row[0])


def allow_login(conn: psycopg.Connection[tuple[Any, ...]], role: str, allowed: bool) -> None:
    """LOGIN or NOLOGIN. A role cannot give itself LOGIN back, so a login fenced off with
    NOLOGIN and then rid of its sessions has nothing left running as it."""
    from psycopg import sql

    keyword = sql.SQL("LOGIN" if allowed else "NOLOGIN")
    conn.execute(sql.SQL("ALTER ROLE {} {}").format(sql.Identifier(role), keyword))


@contextmanager
def fenced_off(conn: psycopg.Connection[tuple[Any, ...]], role: str) -> Iterator[int]:
    """Change a login that a leaked value may be using, with nothing of it running.

    NOLOGIN first (no new session), then every session ended and waited for, so no
    session of the login can change its own password or settings while the block
    runs; yields how many were ended. LOGIN again only when the block succeeds: a
    failure leaves the login unable to log in, which a retry of the step repairs.
    """
    allow_login(conn, role, False)
    ended = terminate_sessions(conn, role)
    yield ended
    allow_login(conn, role, True)


def tier_group(conn: psycopg.Connection[tuple[Any, ...]], role: str) -> str | None:
    """The tier group role of a login: the NOLOGIN group it is a member of and one of
    the `alternating_logins` of. A login fenced off (NOLOGIN, by a step that failed
    halfway) is still its group's; a NOLOGIN role in no such group is a group itself."""
    row = conn.execute(
        "SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = %s", (role,)
    ).fetchone()
    if row is None:
        return None
    rows = conn.execute(
        "SELECT g.rolname FROM pg_catalog.pg_auth_members m "
        "JOIN pg_catalog.pg_roles g ON g.oid = m.roleid "
        "JOIN pg_catalog.pg_roles u ON u.oid = m.member "
        "WHERE u.rolname = %s AND NOT g.rolcanlogin AND NOT g.rolname LIKE 'pg\\_%%' "
        "ORDER BY g.rolname",
        (role,),
    ).fetchall()
    groups = [str(group) for (group,) in rows if role in alternating_logins(str(group))]
    if len(groups) == 1:
        return groups[0]
    if not row[0] and not groups:
        return role
    return None


def group_logins(conn: psycopg.Connection[tuple[Any, ...]], group: str) -> list[str]:
    """The tier's alternating logins (`alternating_logins`) that exist as members of
    `group`, fenced off (NOLOGIN) or not; never a superuser or a role that can create
    roles."""
    rows = conn.execute(
        "SELECT u.rolname FROM pg_catalog.pg_auth_members m "
        "JOIN pg_catalog.pg_roles g ON g.oid = m.roleid "
        "JOIN pg_catalog.pg_roles u ON u.oid = m.member "
        "WHERE g.rolname = %s AND u.rolname = ANY(%s) "
        "AND NOT u.rolsuper AND NOT u.rolcreaterole "
        "ORDER BY u.rolname",
        (group, list(alternating_logins(group))),
    ).fetchall()
    return [str(row[0]) for row in rows]


class TierSettingsError(Exception):
    """A tier login did not take its tier's settings (TIER_LOGIN_SETTINGS)."""


def _role_settings(conn: psycopg.Connection[tuple[Any, ...]], role: str) -> dict[int, list[str]]:
    """`role`'s defaults by database oid (0: every database), as ALTER ROLE stored them."""
    rows = conn.execute(
        "SELECT s.setdatabase, s.setconfig FROM pg_catalog.pg_db_role_setting s "
        "JOIN pg_catalog.pg_roles r ON r.oid = s.setrole WHERE r.rolname = %s",
        (role,),
    ).fetchall()
    return {int(database): sorted(config or []) for database, config in rows}


def restore_login_settings(
    conn: psycopg.Connection[tuple[Any, ...]], login: str, tier: str
) -> None:
    """Give `login` exactly its tier's settings (TIER_LOGIN_SETTINGS), nothing else.

    The tier's fences (statement_timeout, default_transaction_read_only, ...) are
    role defaults, and any role may change its own: a leaked login could lift them
    for every later session of that login, the API's included. Rotation arms a
    login only after putting them back, per database as well, where a role's own
    `ALTER ROLE ... IN DATABASE` would otherwise override them. The values come from
    code, never from a role the login could have changed (its group's included).
    """
    from psycopg import sql

    from functions.shared.db.roles import TIER_LOGIN_SETTINGS

    settings = TIER_LOGIN_SETTINGS[tier]
    role = sql.Identifier(login)
    with conn.transaction():
        for database in _role_settings(conn, login):
            if database:
                name = conn.execute(
                    "SELECT datname FROM pg_catalog.pg_database WHERE oid = %s", (database,)
                ).fetchone()
                if name is not None:
                    conn.execute(
                        sql.SQL("ALTER ROLE {} IN DATABASE {} RESET ALL").format(
                            role, sql.Identifier(str(name[0]))
                        )
                    )
        conn.execute(sql.SQL("ALTER ROLE {} RESET ALL").format(role))
        for setting, value in settings.items():
            conn.execute(
                sql.SQL("ALTER ROLE {} SET {} = {}").format(
                    role, sql.Identifier(setting), sql.Literal(value)
                )
            )
    expected = sorted(f"{setting}={value}" for setting, value in settings.items())
    if _role_settings(conn, login) != {0: expected}:
        raise TierSettingsError(f"{login} did not take the {tier} tier's settings")
