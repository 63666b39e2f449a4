"""The database roles of the three tiers, and how their names are spelled.

Production uses the prefix `babyshield`. Roles are cluster-wide, so a test session on
a shared server uses a prefix of its own; everything that names a role (migrations,
grants checks, rotation) goes through `RoleNames`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

DEFAULT_PREFIX = "babyshield"

# Each tier's login settings, as sql/003, sql/004 and sql/024 give a login and
# PostgreSQL stores them. Rotation puts exactly these on a login before arming it, and
# the API's pools send them as startup options (functions/shared/db/pools.py), which
# outrank a login's own defaults. They live here, not on a role: any role may change
# its own defaults, and a login may SET ROLE to its group, so a template kept on the
# group (sql/010, reset by sql/020) was the tier's to rewrite.
#
# client_connection_check_interval (sql/024): every 10 s of a running statement the
# server checks that its client is still there, and ends the statement, its locks and
# its connection slot when it is not (a Lambda that timed out mid-statement). The
# check is one poll() per interval of a statement that runs that long, which no
# statement of the API's does (DB_STATEMENT_TIMEOUT_SECONDS, 10 s); 10 s is also the
# migrator's (functions/shared/db/migrations.py).
TIER_LOGIN_SETTINGS: dict[str, dict[str, str]] = {
    "readonly": {
        "statement_timeout": "30s",
        "default_transaction_read_only": "on",
        "idle_in_transaction_session_timeout": "60s",
        "client_connection_check_interval": "10s",
    },
    "app": {
        "statement_timeout": "60s",
        "idle_in_transaction_session_timeout": "60s",
        "client_connection_check_interval": "10s",
    },
}

# Lower-case, unquoted-identifier characters only, with room for the longest suffix
# inside PostgreSQL's 63-byte identifier limit.
_PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


def alternating_logins(group: str) -> tuple[str, str]:
    """The two login roles of a tier's group role, which rotation alternates between.

    Only these: on PostgreSQL 16 and later the role that created the group (RDS's
    master user, which runs the migrations) is a member of it too, and must never
    be taken for one of the tier's logins.
    """
    return (f"{group}_a", f"{group}_b")


@dataclass(frozen=True)
class RoleNames:
    """Every role the migrations create, by tier."""

    prefix: str
    readonly: str
    app: str
    admin: str
    auth_lookup: str
    readonly_a: str
    readonly_b: str
    app_a: str
    app_b: str
    migrator: str

    @classmethod
    def with_prefix(cls, prefix: str = DEFAULT_PREFIX) -> RoleNames:
        if not _PREFIX_PATTERN.fullmatch(prefix):
            raise ValueError("role prefix must be a lower-case identifier of at most 41 chars")
        readonly, app = f"{prefix}_readonly", f"{prefix}_app"
        readonly_a, readonly_b = alternating_logins(readonly)
        app_a, app_b = alternating_logins(app)
        return cls(
            prefix=prefix,
            readonly=readonly,
            app=app,
            admin=f"{prefix}_admin",
            auth_lookup=f"{prefix}_auth_lookup",
            readonly_a=readonly_a,
            readonly_b=readonly_b,
            app_a=app_a,
            app_b=app_b,
            migrator=f"{prefix}_migrator",
        )

    def as_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "prefix"}

    def all(self) -> tuple[str, ...]:
        """Login roles first: they must be dropped before the groups they belong to."""
        return (
            self.readonly_a,
            self.readonly_b,
            self.app_a,
            self.app_b,
            self.migrator,
            self.readonly,
            self.app,
            self.admin,
            self.auth_lookup,
        )

    def login_roles(self, tier: str) -> tuple[str, ...]:
        """The alternating login users of a tier ('readonly', 'app') or the admin login."""
        if tier == "readonly":
            return (self.readonly_a, self.readonly_b)
        if tier == "app":
            return (self.app_a, self.app_b)
        if tier == "admin":
            return (self.migrator,)
        raise ValueError(f"unknown tier: {tier!r}")


PRODUCTION_ROLES = RoleNames.with_prefix()


def set_login_password(conn: Any, role: str, password: str) -> None:
    """Give a login role a password, sending only its SCRAM verifier to the server.

    The plaintext never appears in a statement, so it cannot reach the server log or
    pg_stat_statements; ALTER ROLE takes no bound parameters, hence the literal.
    """
    from psycopg import sql

    verifier = conn.pgconn.encrypt_password(
        password.encode("utf-8"), role.encode("utf-8"), b"scram-sha-256"
    )
    conn.execute(
        sql.SQL("ALTER ROLE {} PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(verifier.decode("ascii"))
        )
    )
