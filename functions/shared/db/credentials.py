"""Database credentials: Secrets Manager AWSCURRENT in AWS, a URL in local mode.

A rotation changes the password under a warm Lambda. The source keeps the secret it
read and, when the database rejects that password, the connection code asks it to
refetch once: the new AWSCURRENT is then used and no request is dropped. A second
rejection is a real failure.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from functions.shared.settings import Settings

Tier = Literal["readonly", "app", "admin"]

# SQLSTATE class 28, invalid authorization: 28P01 invalid_password, 28000 for a role
# that may not log in (or no longer exists after a rotation).
_AUTH_SQLSTATES = frozenset({"28P01", "28000"})


class CredentialError(Exception):
    """A secret that cannot be used as database credentials (never shows its value)."""


@dataclass(frozen=True)
class DbCredentials:
    host: str
    port: int
    dbname: str
    username: str
    password: str = field(repr=False)

    @classmethod
    def from_secret(cls, secret_string: str) -> DbCredentials:
        """Parse the rotation-compatible JSON: engine, host, port, dbname, username, password."""
        try:
            payload = json.loads(secret_string)
        except json.JSONDecodeError as exc:
            raise CredentialError("database secret is not JSON") from exc
        if not isinstance(payload, dict):
            raise CredentialError("database secret is not a JSON object")
        missing = [k for k in ("host", "username", "password") if not payload.get(k)]
        if missing:
            raise CredentialError(f"database secret lacks {', '.join(missing)}")
        try:
            port = int(payload.get("port", 5432))
        except (TypeError, ValueError) as exc:
            raise CredentialError("database secret has a non-numeric port") from exc
        return cls(
            host=str(payload["host"]),
            port=port,
            dbname=str(payload.get("dbname") or "babyshield"),
            username=str(payload["username"]),
            password=str(payload["password"]),
        )


class CredentialSource(Protocol):
    """Where a tier's connection parameters come from."""

    def current(self) -> dict[str, Any]:
        """libpq keyword parameters for a new connection."""
        ...

    def refresh(self) -> bool:
        """Refetch after a rejected password; True when something changed."""
        ...


# (secret id, refresh) -> SecretString; `refresh` is True for the read that follows
# a rejected password (a fetcher with a cache of its own must bypass it then).
SecretFetcher = Callable[[str, bool], str]

# Who reads through fetch_secret_string, for the audit line: a function, by its name
# from the settings, unless the process runs this code for a person, as `babyshield`
# does (ops/cli.py names its user here). One value for the process, not a ContextVar:
# a pool connects, and so reads the secret, in threads of its own.
_reader: str | None = None


def name_secret_reader(reader: str | None) -> str | None:
    """Name the reader that every secret read from here on is audited under (None: the
    function's own name again); returns the one it replaces."""
    global _reader
    previous, _reader = _reader, reader
    return previous


def fetch_secret_string(secret_id: str, force: bool) -> str:
    """AWSCURRENT of a secret, read from Secrets Manager on every call.

    No cache here: SecretCredentials keeps the value until the database refuses
    it, so a TTL cache would add nothing, and Powertools' parameters package
    imports boto3 and s3transfer (about 50 ms of every cold start that reads a
    database secret, see docs/PERFORMANCE.md).
    """
    from functions.shared.aws_clients import REQUEST, cached_client
    from functions.shared.rotation.audit import audit_secret_read
    from functions.shared.settings import get_settings

    # The stage is explicit: without it some implementations answer from the version
    # that was current before a promotion, and the refresh would re-read the old password.
    answer = cached_client("secretsmanager", REQUEST).get_secret_value(
        SecretId=secret_id, VersionStage="AWSCURRENT"
    )
    value = answer.get("SecretString")
    if not isinstance(value, str):
        raise CredentialError("database secret is not a string")
    version = answer.get("VersionId")
    audit_secret_read(secret_id, "AWSCURRENT", _reader or get_settings().function_name, version)
    return value


class SecretCredentials:
    """A tier's credentials from its Secrets Manager secret."""

    def __init__(self, secret_id: str, settings: Settings, fetch: SecretFetcher | None = None):
        self.secret_id = secret_id
        self._settings = settings
        self._explicit_fetch = fetch
        self._lock = threading.Lock()
        self._credentials: DbCredentials | None = None

    def credentials(self) -> DbCredentials:
        with self._lock:
            if self._credentials is None:
                self._credentials = DbCredentials.from_secret(self._fetch(force=False))
            return self._credentials

    def _fetch(self, *, force: bool) -> str:
        # Looked up at call time, so an observer wrapped around the module function
        # (tests count fetches) sees every read.
        fetch = self._explicit_fetch or fetch_secret_string
        return fetch(self.secret_id, force)

    def current(self) -> dict[str, Any]:
        return connection_parameters(self.credentials(), self._settings)

    def refresh(self) -> bool:
        with self._lock:
            before = self._credentials
            self._credentials = DbCredentials.from_secret(self._fetch(force=True))
            return before != self._credentials


class UrlCredentials:
    """Local mode: a fixed connection URL (DATABASE_*_URL); nothing to refresh."""

    def __init__(self, url: str, settings: Settings):
        from psycopg.conninfo import conninfo_to_dict

        self._parameters: dict[str, Any] = dict(conninfo_to_dict(url))
        self._parameters.setdefault("connect_timeout", settings.db_connect_timeout_seconds)

    def current(self) -> dict[str, Any]:
        return dict(self._parameters)

    def refresh(self) -> bool:
        return False


def connection_parameters(credentials: DbCredentials, settings: Settings) -> dict[str, Any]:
    """libpq parameters; outside local mode the server's certificate and name are verified."""
    parameters: dict[str, Any] = {
        "host": credentials.host,
        "port": credentials.port,
        "dbname": credentials.dbname,
        "user": credentials.username,
        "password": credentials.password,
        "connect_timeout": settings.db_connect_timeout_seconds,
        "application_name": settings.service_name,
    }
    if not settings.is_local:
        parameters["sslmode"] = "verify-full"
        parameters["sslrootcert"] = settings.db_ssl_root_cert
    return parameters


def is_authentication_failure(error: BaseException) -> bool:
    """Did the server refuse these credentials (as opposed to being unreachable)?"""
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate in _AUTH_SQLSTATES:
        return True
    # libpq reports some authentication failures before a SQLSTATE reaches psycopg. A
    # login an emergency rotation has fenced off (NOLOGIN) is refused too: a pool on it
    # must read the secret again, where the tier's other login is current by then.
    text = str(error)
    return (
        "password authentication failed" in text
        or "SCRAM authentication" in text
        or "is not permitted to log in" in text
    )


def source_for(tier: Tier, settings: Settings) -> CredentialSource:
    """Local mode with a URL for the tier uses it; otherwise the tier's secret."""
    if settings.is_local:
        url = {
            "readonly": settings.database_readonly_url,
            "app": settings.database_app_url,
            "admin": settings.database_url,
        }[tier]
        if url:
            return UrlCredentials(url, settings)
    secret_id = {
        "readonly": settings.db_readonly_secret_id,
        "app": settings.db_app_secret_id,
        "admin": settings.db_admin_secret_id,
    }[tier]
    return SecretCredentials(secret_id, settings)
