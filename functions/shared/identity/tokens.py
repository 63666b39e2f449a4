"""Access tokens: issue and verify, with every check a verifier must not skip.

A token is an ES256/EdDSA JWT whose header names its key (`kid`, a Secrets
Manager version id) and its type (`typ: at+jwt`, RFC 9068), and whose claims
carry `iss`, `aud`, `sub` (the user id), `iat`, `nbf`, `exp`, `jti`, `role` and
`typ: access`. Verification trusts nothing in the header: the key is looked up
among the two live ones, the algorithm comes from that key, and key-locating
headers (`jku`, `x5u`, `jwk`, `x5c`) are refused outright (RFC 8725, 3.1-3.2).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from functions.shared.identity.jwt_keys import SUPPORTED_ALGORITHMS, JwtKeyStore, key_store
from functions.shared.settings import get_settings

ACCESS_TOKEN_TYPE = "access"  # noqa: S105  # nosec B105 - a claim value, not a secret
HEADER_TYPE = "at+jwt"
ROLES = frozenset({"user", "admin"})
REQUIRED_CLAIMS = ("exp", "iat", "nbf", "iss", "aud", "sub", "jti", "typ", "role")
# Headers that would let the token point at its own verification key, or demand
# extensions this verifier does not implement.
FORBIDDEN_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c", "crit"})
# Secrets Manager version ids are UUIDs; anything else (paths, URLs, SQL) is refused
# before it is used to look anything up.
KID_PATTERN = re.compile(r"[A-Za-z0-9-]{1,64}")
COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
# Generous for our claims; bounds the work an oversized header can cause.
MAX_TOKEN_LENGTH = 4096
# The headers we issue are under 100 characters (alg, kid, typ). Checked before
# decoding: it bounds the work an unverified header can cause and keeps its nesting
# (384 levels at most) well inside the JSON parser's stack; the parse refuses deeper.
MAX_HEADER_SEGMENT_LENGTH = 1024


class TokenRejected(Exception):
    """A token that must not be accepted; `reason` is a category for audit and metrics."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    kid: str
    token_id: str


@dataclass(frozen=True)
class AccessClaims:
    subject: uuid.UUID
    role: str
    token_id: str
    issued_at: int
    expires_at: int
    kid: str


def issue_access_token(
    subject: uuid.UUID,
    role: str,
    *,
    keys: JwtKeyStore | None = None,
    now: float | None = None,
) -> IssuedToken:
    import jwt

    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    settings = get_settings()
    signing_key = (keys or key_store()).key_ring().current
    issued_at = int(time.time() if now is None else now)
    token_id = str(uuid.uuid4())
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(subject),
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + settings.access_token_ttl_seconds,
        "jti": token_id,
        "typ": ACCESS_TOKEN_TYPE,
        "role": role,
    }
    token = jwt.encode(
        claims,
        signing_key.private_key(),
        algorithm=signing_key.algorithm,
        headers={"kid": signing_key.kid, "typ": HEADER_TYPE},
    )
    return IssuedToken(token, settings.access_token_ttl_seconds, signing_key.kid, token_id)


def _unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header, read only to pick the key; nothing in it is trusted.

    Parsed here rather than with pyjwt's get_unverified_header, which decodes all
    three segments: decode() below does that once anyway, and verification is on
    every authenticated request.
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise TokenRejected("malformed")
    # Three non-empty base64url segments: a signed JWS (a JWE has five).
    if not COMPACT_JWS.fullmatch(token):
        raise TokenRejected("malformed")
    segment = token.partition(".")[0]
    if len(segment) > MAX_HEADER_SEGMENT_LENGTH:
        raise TokenRejected("malformed")
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    # RecursionError: deeply nested JSON ("[[[[..."), which must stay a 401, not a 500.
    except (ValueError, binascii.Error, RecursionError) as exc:
        raise TokenRejected("malformed") from exc
    if not isinstance(header, dict):
        raise TokenRejected("malformed")
    return header


def verify_access_token(token: str, *, keys: JwtKeyStore | None = None) -> AccessClaims:
    """The token's claims if every check passes; TokenRejected(reason) otherwise."""
    import jwt

    header = _unverified_header(token)

    if FORBIDDEN_HEADERS & header.keys():
        raise TokenRejected("forbidden_header")
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in SUPPORTED_ALGORITHMS:
        raise TokenRejected("algorithm_not_allowed")
    kid = header.get("kid")
    if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
        raise TokenRejected("invalid_kid")
    if header.get("typ") != HEADER_TYPE:
        raise TokenRejected("wrong_type")
    key = (keys or key_store()).key_for_kid(kid)
    if key is None:
        raise TokenRejected("unknown_kid")
    if algorithm != key.algorithm:
        raise TokenRejected("algorithm_mismatch")

    settings = get_settings()
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.public_key,
            algorithms=[key.algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway_seconds,
            options={"require": list(REQUIRED_CLAIMS), "strict_aud": True},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenRejected("expired") from exc
    except jwt.ImmatureSignatureError as exc:
        raise TokenRejected("not_yet_valid") from exc
    except jwt.InvalidAudienceError as exc:
        raise TokenRejected("wrong_audience") from exc
    except jwt.InvalidIssuerError as exc:
        raise TokenRejected("wrong_issuer") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise TokenRejected("missing_claim") from exc
    except jwt.InvalidSignatureError as exc:
        raise TokenRejected("bad_signature") from exc
    # A segment or the (signed) payload that does not parse. pyjwt turns a
    # RecursionError in its own JSON parsing into DecodeError; one from anywhere
    # else in the parse is caught too, so no pyjwt version turns it into a 500.
    except (jwt.DecodeError, RecursionError) as exc:
        raise TokenRejected("malformed") from exc
    except jwt.InvalidTokenError as exc:
        raise TokenRejected("invalid") from exc

    if claims.get("typ") != ACCESS_TOKEN_TYPE:
        raise TokenRejected("wrong_type")
    role = claims.get("role")
    # A list or an object would not even hash: a bad claim, not a server error.
    if not isinstance(role, str) or role not in ROLES:
        raise TokenRejected("invalid_claims")
    try:
        subject = uuid.UUID(str(claims["sub"]))
    except ValueError as exc:
        raise TokenRejected("invalid_claims") from exc
    return AccessClaims(
        subject=subject,
        role=str(role),
        token_id=str(claims["jti"]),
        issued_at=int(claims["iat"]),
        expires_at=int(claims["exp"]),
        kid=kid,
    )
