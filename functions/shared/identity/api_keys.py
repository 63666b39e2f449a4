"""API keys: `bs_<key-id>_<secret>`, stored as the SHA-256 of the secret only.

The key id is public (it is the database key and appears in audit lines); the
secret is 256 random bits, so a plain SHA-256 is enough: there is nothing for a
slow hash to protect against that brute force could reach. Checking is lookup by
key id, then `hmac.compare_digest` on the hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

PREFIX = "bs"
SCOPE_RECALLS_READ = "recalls:read"
SCOPE_ADMIN = "admin"
SCOPES = frozenset({SCOPE_RECALLS_READ, SCOPE_ADMIN})
KEY_ID_BYTES = 8
SECRET_BYTES = 32
# The key id is hex (never "_"); the secret is URL-safe base64, which may contain "_".
API_KEY_PATTERN = re.compile(r"bs_([0-9a-f]{16})_([A-Za-z0-9_-]{32,128})")
KEY_ID_PATTERN = re.compile(r"[0-9a-f]{16}")


class ApiKeyRejected(Exception):
    def __init__(self, reason: str, key_id: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.key_id = key_id


@dataclass(frozen=True)
class ParsedApiKey:
    key_id: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class NewApiKey:
    key_id: str
    plaintext: str = field(repr=False)
    secret_hash: bytes = field(repr=False)


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    owner_id: uuid.UUID
    secret_hash: bytes = field(repr=False)
    scopes: frozenset[str]
    rate_limit_per_minute: int
    expires_at: datetime | None
    revoked_at: datetime | None
    owner_role: str
    # The key's rotation chain (sql/011), read in the same lookup: its first key, which
    # the key shares with its predecessor and successor while a rotation's grace period
    # keeps both working, and the smallest limit among the chain's live keys. None
    # where not known: the key counts alone, against its own limit.
    chain_first_key_id: str | None = None
    chain_rate_limit_per_minute: int | None = None

    @property
    def rate_limit_id(self) -> str:
        """What the per-minute limit counts against: one budget for a whole rotation
        chain, so a rotated key does not gain a second one for the grace period."""
        return self.chain_first_key_id or self.key_id

    @property
    def applied_rate_limit_per_minute(self) -> int:
        """The smallest limit of the chain's live keys, never more than the key's own:
        a shared budget is held to what every live key of the chain was granted."""
        if self.chain_rate_limit_per_minute is None:
            return self.rate_limit_per_minute
        return min(self.rate_limit_per_minute, self.chain_rate_limit_per_minute)


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def generate_api_key() -> NewApiKey:
    key_id = secrets.token_hex(KEY_ID_BYTES)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return NewApiKey(key_id, f"{PREFIX}_{key_id}_{secret}", hash_secret(secret))


def parse_api_key(raw: str) -> ParsedApiKey | None:
    match = API_KEY_PATTERN.fullmatch(raw.strip()) if isinstance(raw, str) else None
    if match is None:
        return None
    return ParsedApiKey(match.group(1), match.group(2))


# Compared against when the key id is unknown, so that path does the same work.
_UNKNOWN_KEY_HASH = hash_secret(secrets.token_urlsafe(SECRET_BYTES))


def check_api_key(
    raw: str,
    lookup: Callable[[str], ApiKeyRecord | None],
    *,
    now: datetime | None = None,
) -> ApiKeyRecord:
    """The key's record if `raw` is a live key; ApiKeyRejected(reason, key_id) otherwise."""
    parsed = parse_api_key(raw)
    if parsed is None:
        raise ApiKeyRejected("malformed")
    secret_hash = hash_secret(parsed.secret)
    return check_key_holder(
        parsed.key_id,
        lookup(parsed.key_id),
        lambda stored: hmac.compare_digest(secret_hash, stored),
        "wrong_secret",
        now=now,
    )


def check_key_holder(
    key_id: str,
    record: ApiKeyRecord | None,
    holds: Callable[[bytes], bool],
    mismatch: str,
    *,
    now: datetime | None = None,
) -> ApiKeyRecord:
    """`record` if the caller proved it holds that live key; ApiKeyRejected otherwise.

    `holds(stored_hash)` checks the proof (the secret sent whole, or a request
    signed with its hash); an unknown key is checked against a hash nobody holds,
    so it costs what a known one does. `mismatch` is the reason for a failed proof.
    """
    stored = record.secret_hash if record is not None else _UNKNOWN_KEY_HASH
    matches = holds(bytes(stored))
    if record is None:
        raise ApiKeyRejected("unknown_key", key_id)
    if not matches:
        raise ApiKeyRejected(mismatch, key_id)
    moment = now or datetime.now(UTC)
    if record.revoked_at is not None and record.revoked_at <= moment:
        raise ApiKeyRejected("revoked", key_id)
    if record.expires_at is not None and record.expires_at <= moment:
        raise ApiKeyRejected("expired", key_id)
    return record
