"""The AWSCURRENT and AWSPREVIOUS versions of a secret, cached for a short time.

Read with a plain botocore client (never Powertools' cached provider, whose cache
key ignores VersionStage). Consumers that accept both versions during a
rotation's grace window (JWT keys, webhook secrets) share this cache; when the
rotation removes AWSPREVIOUS, the old version stops being accepted as soon as
the cache entry expires. A new AWSCURRENT is picked up sooner: the first token
or signature that no cached version matches reloads the entry (`refresh()`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from functions.shared.identity import aws
from functions.shared.rotation.audit import audit_secret_read
from functions.shared.settings import get_settings

CURRENT = "AWSCURRENT"
PREVIOUS = "AWSPREVIOUS"


class SecretUnavailable(Exception):
    """Secrets Manager could not be read; callers answer 503, never a guess."""


@dataclass(frozen=True)
class SecretVersion:
    version_id: str
    value: str = field(repr=False)


@dataclass(frozen=True)
class SecretVersions:
    current: SecretVersion
    previous: SecretVersion | None

    def live(self) -> tuple[SecretVersion, ...]:
        """Current first: the common case matches on the first try."""
        return (self.current,) if self.previous is None else (self.current, self.previous)


def load_secret_versions(secret_id: str) -> SecretVersions:
    client = aws.secretsmanager()
    try:
        current = client.get_secret_value(SecretId=secret_id, VersionStage=CURRENT)
    except Exception as exc:
        raise SecretUnavailable(f"cannot read {CURRENT} of {secret_id}") from exc
    reader = get_settings().function_name
    audit_secret_read(secret_id, CURRENT, reader, current["VersionId"])
    previous: SecretVersion | None = None
    try:
        found = client.get_secret_value(SecretId=secret_id, VersionStage=PREVIOUS)
    except Exception as exc:
        # No AWSPREVIOUS is normal: before the first rotation, or after an
        # emergency rotation retired it.
        if aws.error_code(exc) != "ResourceNotFoundException":
            raise SecretUnavailable(f"cannot read {PREVIOUS} of {secret_id}") from exc
    else:
        audit_secret_read(secret_id, PREVIOUS, reader, found["VersionId"])
        if found["VersionId"] != current["VersionId"]:
            previous = SecretVersion(found["VersionId"], found.get("SecretString", ""))
    latest = SecretVersion(current["VersionId"], current.get("SecretString", ""))
    return SecretVersions(latest, previous)


@dataclass
class _Entry:
    versions: SecretVersions
    # When the load started: its values are at most this old. Dated at its end, a
    # slow load would keep a rotated-away key signing longer than the cache's age,
    # which the JWT rotation guard's window counts on (rotate_jwt/key_pair.py).
    loaded_at: float


class SecretVersionsCache:
    """Per-process cache of secret versions with a maximum age.

    `refresh()` lets a caller that met an unknown version (a token signed with a
    key this instance has not seen yet, a webhook signed with a new secret)
    reload early. Those miss-driven reloads are rate-limited on their own clock,
    one per `min_refresh_seconds` per secret, so garbage input cannot turn into
    a Secrets Manager call per request, while an ordinary load on expiry never
    holds back the first miss after it.
    """

    def __init__(
        self,
        loader: Callable[[str], SecretVersions] = load_secret_versions,
        clock: Callable[[], float] = time.monotonic,
        min_refresh_seconds: float = 5.0,
    ):
        self._loader = loader
        self._clock = clock
        self._min_refresh = min_refresh_seconds
        self._entries: dict[str, _Entry] = {}
        # When each secret's last miss-driven reload started; ordinary loads do not count.
        self._refreshed_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def get(self, secret_id: str, max_age: float) -> SecretVersions:
        entry = self._entries.get(secret_id)
        if entry is not None and self._clock() - entry.loaded_at < max_age:
            return entry.versions
        return self._load(secret_id, max_age)

    def refresh(self, secret_id: str) -> SecretVersions | None:
        """Reload now, unless a miss already reloaded this secret in the last interval.

        Inside the interval the cached versions come back without a call (None if
        there are none): they may be newer than the caller's, when another thread's
        miss reloaded them a moment ago. The interval is counted from the start of
        the last attempt, a failed one included, so an outage is not called harder.
        """
        with self._lock:
            now = self._clock()
            last = self._refreshed_at.get(secret_id)
            if last is not None and now - last < self._min_refresh:
                entry = self._entries.get(secret_id)
                return None if entry is None else entry.versions
            self._refreshed_at[secret_id] = now
            versions = self._loader(secret_id)
            self._entries[secret_id] = _Entry(versions, now)
            return versions

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._refreshed_at.clear()

    def _load(self, secret_id: str, max_age: float) -> SecretVersions:
        with self._lock:
            # Another thread may have loaded it while this one waited.
            entry = self._entries.get(secret_id)
            fresh_for = min(max_age, self._min_refresh)
            if entry is not None and self._clock() - entry.loaded_at < fresh_for:
                return entry.versions
            started = self._clock()
            versions = self._loader(secret_id)
            self._entries[secret_id] = _Entry(versions, started)
            return versions


secret_cache = SecretVersionsCache()
