"""Password hashing with scrypt (hashlib, no native dependency to ship).

Stored form: `scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`, so the cost can be
raised later without invalidating existing hashes (`needs_rehash`). Verifying
an unknown account runs the same scrypt against a dummy hash, and a hash stored
at a lower cost is checked with as much work as the configured cost, so a wrong
email costs the same time as a wrong password.

Passwords are NFKC-normalised before hashing (NIST SP 800-63B 5.1.1.2): "é" typed
as U+00E9 or as "e" + U+0301, or digits typed full-width, are one password whatever
the keyboard. Hashes made before that were made from the password as typed; they
still verify, and the sign-in remakes them from the normalised form.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import unicodedata
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
# Longer passwords gain nothing and cost hashing time an attacker controls. Counted
# in the normalised form, the one scrypt is given: NFKC can turn one code point into
# up to 18 (U+FDFA), so a limit on the input alone would not bound scrypt's.
MAX_PASSWORD_CHARS = 1024
# The bound on the input before it is normalised, which also bounds that work. NFKC
# composes at most 4 code points into one (the longest canonical decomposition, as of
# U+1F82), so every password within MAX_PASSWORD_CHARS once normalised fits.
MAX_PASSWORD_INPUT_CHARS = 4 * MAX_PASSWORD_CHARS


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


def normalise_password(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


def exceeds_length_limit(password: str) -> bool:
    """Whether the password is too long to hash: over the input bound, or over
    MAX_PASSWORD_CHARS once normalised."""
    return _too_long(password, normalise_password(password[:MAX_PASSWORD_INPUT_CHARS]))


def _too_long(password: str, normalised: str) -> bool:
    return len(password) > MAX_PASSWORD_INPUT_CHARS or len(normalised) > MAX_PASSWORD_CHARS


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, params: ScryptParams | None = None) -> str:
    """The stored form of the password's NFKC normalisation."""
    normalised = normalise_password(password[:MAX_PASSWORD_INPUT_CHARS])
    if _too_long(password, normalised):
        raise ValueError("password too long")
    if "\x00" in password or "\x00" in normalised:
        # scrypt keys HMAC with the password, and HMAC pads a key shorter than its block
        # with NUL bytes: "pw" and "pw\x00" would derive the same hash. No character's
        # NFKC form is empty or holds a NUL; the form that is hashed is checked anyway.
        raise ValueError("password contains a NUL character")
    return _encoded_hash(normalised, params or configured_params())


def _encoded_hash(text: str, params: ScryptParams) -> str:
    """The stored form of a hash of `text` as given, with a new salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _derive(text, salt, params)
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


@dataclass(frozen=True)
class PasswordCheck:
    matched: bool
    # Matched only as typed, not normalised: a hash made before passwords were
    # normalised, which the sign-in remakes from the normalised form.
    matched_unnormalised: bool = False


NO_MATCH = PasswordCheck(matched=False)


def verify_password(password: str, encoded: str | None) -> bool:
    """True only if `password` matches `encoded`; same cost when `encoded` is missing."""
    return check_password(password, encoded).matched


def check_password(password: str, encoded: str | None) -> PasswordCheck:
    """Whether `password` matches `encoded`, and whether only in its form as typed.

    The normalised form is checked first. Only a password that normalisation changes
    is then checked as typed too, against hashes made before normalisation: one scrypt
    run for an ASCII password, two for such a one whatever the account (a missing
    `encoded` included), so the count says nothing the caller does not know."""
    parsed = _parse(encoded) if encoded else None
    matched_account = parsed is not None
    if parsed is None:
        parsed = _parse(dummy_hash())
    if parsed is None:  # the dummy is made here; unparsable would be a bug
        raise RuntimeError("dummy password hash is unparsable")
    params, salt, expected = parsed
    typed = password[:MAX_PASSWORD_INPUT_CHARS]
    normalised = normalise_password(typed)
    # Over-long input still costs a full derivation (of a truncated copy), then fails;
    # so does one with a NUL, which no stored password holds (hash_password) and which
    # HMAC's key padding would otherwise let pass for the password without it.
    refused = _too_long(password, normalised) or "\x00" in typed or "\x00" in normalised
    if _digest_matches(normalised, salt, params, expected, pad=matched_account):
        return PasswordCheck(matched=matched_account and not refused)
    if typed == normalised:
        return NO_MATCH
    # Hashes made before normalisation were of at most MAX_PASSWORD_CHARS as typed.
    refused = refused or len(typed) > MAX_PASSWORD_CHARS
    if _digest_matches(typed, salt, params, expected, pad=matched_account):
        matched = matched_account and not refused
        return PasswordCheck(matched=matched, matched_unnormalised=matched)
    return NO_MATCH


def _digest_matches(
    password: str, salt: bytes, params: ScryptParams, expected: bytes, *, pad: bool
) -> bool:
    candidate = _derive(password[:MAX_PASSWORD_CHARS], salt, params)
    if pad:
        _pad_to_configured_cost(password[:MAX_PASSWORD_CHARS], salt, params)
    return hmac.compare_digest(candidate, expected)


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
