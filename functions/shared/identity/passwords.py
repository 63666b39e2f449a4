"""Password hashing with scrypt (hashlib, no native dependency to ship).

Stored form: `scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`, so the cost can be
raised later without invalidating existing hashes (`needs_rehash`). Verifying
an unknown account runs the same scrypt against a dummy hash, and a hash stored
at a lower cost is checked with as much work as the configured cost, so a wrong
email costs the same time as a wrong password.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from functools import lru_cache

from functions.shared.settings import (
    SCRYPT_MAX_MEMORY_BYTES,
    get_settings,
    scrypt_memory_bytes,
)

SCHEME = "scrypt"
SALT_BYTES = 16
HASH_BYTES = 32
# Bounds on parameters read back from storage: a corrupted or planted hash must
# not make one sign-in allocate gigabytes (their product is bounded too, by
# SCRYPT_MAX_MEMORY_BYTES).
MAX_N = 2**20
MAX_R = 32
MAX_P = 16
# Longer passwords gain nothing and cost hashing time an attacker controls.
MAX_PASSWORD_CHARS = 1024


@dataclass(frozen=True)
class ScryptParams:
    n: int
    r: int
    p: int

    @property
    def maxmem(self) -> int:
        return scrypt_memory_bytes(self.n, self.r, self.p)


def configured_params() -> ScryptParams:
    settings = get_settings()
    return ScryptParams(settings.scrypt_n, settings.scrypt_r, settings.scrypt_p)


def _derive(password: str, salt: bytes, params: ScryptParams) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=params.n,
        r=params.r,
        p=params.p,
        maxmem=params.maxmem,
        dklen=HASH_BYTES,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, params: ScryptParams | None = None) -> str:
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValueError("password too long")
    if "\x00" in password:
        # scrypt keys HMAC with the password, and HMAC pads a key shorter than its block
        # with NUL bytes: "pw" and "pw\x00" would derive the same hash.
        raise ValueError("password contains a NUL character")
    params = params or configured_params()
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _derive(password, salt, params)
    return f"{SCHEME}${params.n}${params.r}${params.p}${_b64(salt)}${_b64(digest)}"


def _parse(encoded: str) -> tuple[ScryptParams, bytes, bytes] | None:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        return None
    try:
        params = ScryptParams(int(parts[1]), int(parts[2]), int(parts[3]))
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        return None
    if not (
        2 <= params.n <= MAX_N
        and params.n & (params.n - 1) == 0
        and 1 <= params.r <= MAX_R
        and 1 <= params.p <= MAX_P
        and params.maxmem <= SCRYPT_MAX_MEMORY_BYTES
        and salt
        and len(digest) == HASH_BYTES
    ):
        return None
    return params, salt, digest


@lru_cache(maxsize=4)
def _dummy_hash(params: ScryptParams) -> str:
    return hash_password(secrets.token_urlsafe(16), params)


def dummy_hash() -> str:
    """A hash with the configured cost that no password matches."""
    return _dummy_hash(configured_params())


def verify_password(password: str, encoded: str | None) -> bool:
    """True only if `password` matches `encoded`; same cost when `encoded` is missing."""
    parsed = _parse(encoded) if encoded else None
    matched_account = parsed is not None
    if parsed is None:
        parsed = _parse(dummy_hash())
    if parsed is None:  # the dummy is made here; unparsable would be a bug
        raise RuntimeError("dummy password hash is unparsable")
    params, salt, expected = parsed
    # Over-long input still costs a full derivation (of a truncated copy), then fails;
    # so does one with a NUL, which no stored password holds (hash_password) and which
    # HMAC's key padding would otherwise let pass for the password without it.
    refused = len(password) > MAX_PASSWORD_CHARS or "\x00" in password
    candidate = _derive(password[:MAX_PASSWORD_CHARS], salt, params)
    if matched_account:
        _pad_to_configured_cost(password[:MAX_PASSWORD_CHARS], salt, params)
    return hmac.compare_digest(candidate, expected) and matched_account and not refused


# Past this many repeats a stored cost is implausibly low (no configured cost was):
# one derivation at the configured cost stands in for them.
MAX_PADDING_DERIVATIONS = 64


def _pad_to_configured_cost(password: str, salt: bytes, params: ScryptParams) -> None:
    """Make a check of a hash stored at a lower cost take as long as one at the
    configured cost.

    After SCRYPT_N (or r, p) is raised, an account keeps its cheaper hash until its
    owner next signs in, while an unknown email is checked against a dummy at the
    configured cost: without this, a wrong password would answer several times
    faster for a registered email than for an unknown one. scrypt's work grows with
    n * r * p, so the same derivation is repeated until that work is matched.
    """
    configured = configured_params()
    stored_work, configured_work = (
        params.n * params.r * params.p,
        configured.n * configured.r * configured.p,
    )
    repeats = -(-configured_work // stored_work) - 1  # ceil, less the check itself
    if repeats > MAX_PADDING_DERIVATIONS:
        _derive(password, salt, configured)
        return
    for _ in range(repeats):
        _derive(password, salt, params)


def needs_rehash(encoded: str) -> bool:
    parsed = _parse(encoded)
    return parsed is None or parsed[0] != configured_params()
