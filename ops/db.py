"""`babyshield db migrate`: apply sql/ with the admin connection.

The connection comes from --database-url, else DATABASE_URL, else (outside local
mode) the admin secret in Secrets Manager. Applying twice is a no-op.
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from ops.console import CommandError

if TYPE_CHECKING:
    from functions.shared.db.roles import RoleNames


# libpq's parse errors quote the part of the value they stumbled on, which may be a
# password: the value is never repeated, only what shape it should have.
NOT_A_DATABASE_URL = "not a PostgreSQL connection URL or conninfo string"
DATABASE_URL_EXAMPLE = (
    "e.g. postgresql://USER@HOST:5432/DBNAME; percent-encode @ / : # ? in a password "
    "(%40 %2F %3A %23 %3F)"
)
# What a host or a port can be (names, addresses, [IPv6], a socket directory; digits).
# Anything else is a password's tail that an unencoded `@` or `/` pushed there, which
# libpq's connection error would quote.
_HOST = re.compile(r"[A-Za-z0-9._:%\[\]/-]+")
_PORT = re.compile(r"[0-9]{1,5}")


def connection_failure(error: Exception) -> str:
    """libpq's account of a failed connection on one line: every line of it, since the
    first names the host and port it tried and the last only asks whether a server runs
    there. It names host, port and user, never the password."""
    return (
        " ".join(line.strip() for line in str(error).strip().splitlines()) or type(error).__name__
    )


def is_conninfo(value: str) -> bool:
    """Does libpq parse it (a postgresql:// URL or key=value pairs) into hosts and ports
    that can be ones; connecting is later."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        parameters = conninfo_to_dict(value)
    except psycopg.ProgrammingError:
        return False
    for name, form in (("host", _HOST), ("hostaddr", _HOST), ("port", _PORT)):
        given = parameters.get(name)
        # An empty element is libpq's default (a list like "h1,,h2" may hold one).
        parts = str(given).split(",") if given is not None else []
        if not all(form.fullmatch(part) for part in parts if part):
            return False
    return True


def database_url(text: str) -> str:
    """--database-url: a malformed one is a usage error, refused before anything runs."""
    if not is_conninfo(text):
        raise argparse.ArgumentTypeError(f"{NOT_A_DATABASE_URL} ({DATABASE_URL_EXAMPLE})")
    return text


def role_prefix(text: str) -> str:
    """--role-prefix: a malformed one is a usage error, refused before anything runs."""
    from functions.shared.db.roles import RoleNames

    try:
        RoleNames.with_prefix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, e.g. babyshield_staging") from None
    return text


def admin_conninfo(explicit: str | None) -> str:
    """The admin connection: flag, DATABASE_URL, or the db-admin secret (AWS)."""
    if explicit:
        return explicit
    from psycopg.conninfo import make_conninfo

    from functions.shared.db.credentials import CredentialError, source_for
    from functions.shared.settings import get_settings

    settings = get_settings()
    if settings.database_url:
        if not is_conninfo(settings.database_url):
            raise CommandError(f"DATABASE_URL is {NOT_A_DATABASE_URL}", hint=DATABASE_URL_EXAMPLE)
        return settings.database_url
    try:
        parameters = source_for("admin", settings).current()
    except CredentialError as exc:
        raise CommandError(str(exc), hint="check the db-admin secret's JSON") from exc
    except Exception as exc:  # botocore errors: no credentials, no secret, no network
        raise CommandError(
            f"cannot read the admin secret {settings.db_admin_secret_id}: {type(exc).__name__}",
            hint="pass --database-url or set DATABASE_URL",
        ) from exc
    return make_conninfo(**parameters)


def prepare_local_database(
    admin_url: str, *, seed: bool = True, roles: RoleNames | None = None
) -> dict[str, str]:
    """Migrate (and seed) a local database and return the environment the API needs.

    For the local stack: the login roles get fresh random passwords (only their SCRAM
    verifiers reach the server), and the returned DATABASE_*_URL values carry them,
    so the API connects as the read-only and app tiers, never as the superuser.
    """
    import secrets

    import psycopg
    from psycopg.conninfo import make_conninfo

    from functions.shared.db.migrations import apply_migrations
    from functions.shared.db.roles import PRODUCTION_ROLES, set_login_password
    from ops.seed import seed_demo_data

    roles = roles or PRODUCTION_ROLES
    apply_migrations(admin_url, roles=roles)
    if seed:
        seed_demo_data(admin_url)
    environment = {"DATABASE_URL": admin_url}
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for tier, variable in (("readonly", "DATABASE_READONLY_URL"), ("app", "DATABASE_APP_URL")):
            role = roles.login_roles(tier)[0]
            password = secrets.token_urlsafe(24)
            set_login_password(conn, role, password)
            environment[variable] = make_conninfo(admin_url, user=role, password=password)
    return environment


def _migrate(args: argparse.Namespace) -> int:
    from functions.shared.db.migrations import MigrationError, apply_migrations
    from functions.shared.db.roles import RoleNames

    roles = RoleNames.with_prefix(args.role_prefix)  # checked by role_prefix()
    conninfo = admin_conninfo(args.database_url)
    import psycopg

    try:
        applied = apply_migrations(conninfo, roles=roles)
    except MigrationError as exc:
        raise CommandError(str(exc), hint="fix the migration; nothing of it was applied") from exc
    except psycopg.OperationalError as exc:
        # libpq's message names host and user, never the password.
        raise CommandError(
            f"cannot connect to the database: {connection_failure(exc)}",
            hint="check --database-url / DATABASE_URL and that the server is running",
        ) from exc
    if applied:
        for name in applied:
            print(f"applied {name}")
    else:
        print("database is up to date")
    return 0


def _seed(args: argparse.Namespace) -> int:
    import psycopg

    from ops.seed import seed_demo_data

    try:
        inserted = seed_demo_data(admin_conninfo(args.database_url))
    except psycopg.OperationalError as exc:
        raise CommandError(
            f"cannot connect to the database: {connection_failure(exc)}",
            hint="check --database-url / DATABASE_URL and that the server is running",
        ) from exc
    except psycopg.errors.UndefinedTable as exc:
        raise CommandError("the recalls table is missing", hint="babyshield db migrate") from exc
    print(f"seeded {inserted} demo recall(s)")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "db",
        help="database migrations",
        description="Apply the migrations in sql/ (twice is a no-op) or insert the demo "
        "recalls, as the admin login: --database-url, else $DATABASE_URL, else the "
        "db-admin secret (the running local stack's, or AWS's). In AWS the deploy runs the "
        "migrations (docs/RUNBOOK.md).",
    )
    commands = parser.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    migrate = commands.add_parser("migrate", help="apply pending migrations in sql/")
    migrate.add_argument(
        "--database-url",
        type=database_url,
        default=None,
        help="admin connection (default: $DATABASE_URL, else the db-admin secret)",
    )
    migrate.add_argument(
        "--role-prefix",
        type=role_prefix,
        default="babyshield",
        help="prefix of the role names (default: babyshield); another prefix keeps a "
        "second environment on a shared server apart",
    )
    migrate.set_defaults(func=_migrate)
    seed = commands.add_parser("seed", help="insert the demo recalls (idempotent)")
    seed.add_argument("--database-url", type=database_url, default=None, help="as for migrate")
    seed.set_defaults(func=_seed)
