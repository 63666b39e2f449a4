"""Access tokens, without the HTTP framework: sign-in (email + password -> token),
who-am-I, and the public keys that verify the tokens.

Sign-in answers the same way whether the email is unknown or the password is
wrong, and costs the same time (a dummy scrypt for unknown emails). Attempts are
counted per account and per source IP in DynamoDB, and each password check first
reserves its attempt there, so requests arriving together on many instances
still get at most the threshold's worth of checks; past it the caller waits (429
with Retry-After), whichever instance it reaches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import AfterValidator, ConfigDict, Field, StringConstraints

from functions.api.identity.audit import audit
from functions.api.models import ApiModel
from functions.shared import names
from functions.shared.caller import Caller
from functions.shared.errors import ServiceUnavailable, TooManyRequests, Unauthorized
from functions.shared.observability import logger, metrics

if TYPE_CHECKING:
    from functions.shared.identity.lockout import LockoutKeys, Reservation, SignInLockout

INVALID_CREDENTIALS = "Invalid email or password."
# How far the published key set may lag the secret: at most one Secrets Manager read
# per this interval per instance, however often relying parties fetch it.
JWKS_MAX_AGE_SECONDS = 5.0

Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$"
    ),
]


def _fits_once_normalised(password: str) -> str:
    """The hashing limit counts the NFKC form, which may be longer or shorter than the
    password as sent; over it is a 422 ("of the wrong length"), as an over-long
    input is."""
    from pydantic_core import PydanticCustomError

    from functions.shared.identity.passwords import exceeds_length_limit

    if exceeds_length_limit(password):
        raise PydanticCustomError("password_too_long", "password too long")
    return password


# max_length is passwords.MAX_PASSWORD_INPUT_CHARS, the bound before normalising (a
# constant here: importing that module at cold start would load the settings).
Password = Annotated[
    str,
    StringConstraints(min_length=1, max_length=4096),
    AfterValidator(_fits_once_normalised),
]


class LoginRequest(ApiModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    # Out of the model's repr: Powertools' debug log prints a route's arguments.
    password: Password = Field(repr=False)


class TokenResponse(ApiModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the RFC 6750 scheme name
    expires_in: int


class Me(ApiModel):
    user_id: str
    role: str
    authenticated_by: str


def sign_in(credentials: LoginRequest, source_ip: str) -> TokenResponse:
    from functions.api.identity.store import user_for_login
    from functions.shared.identity.lockout import SignInLockout, lockout_keys
    from functions.shared.identity.passwords import check_password

    email = credentials.email.lower()
    lockout = SignInLockout()
    reservation = _reserve_attempt(lockout, lockout_keys(email, source_ip), source_ip)
    try:
        user = user_for_login(email)
        check = check_password(credentials.password, user.password_hash if user else None)
    except BaseException:
        # No password was checked (the database was down, say): the attempt is not spent.
        _release_attempt(lockout, reservation)
        raise
    if not check.matched or user is None:
        _record_failure(lockout, reservation)
        audit(
            "sign_in",
            "failure",
            reason=names.SIGN_IN_UNKNOWN_USER if user is None else names.SIGN_IN_WRONG_PASSWORD,
            user_id=user.user_id if user else None,
            source_ip=source_ip,
        )
        raise Unauthorized(INVALID_CREDENTIALS)

    from functions.shared.identity.jwt_keys import KeyMaterialError
    from functions.shared.identity.lockout import LockoutUnavailable
    from functions.shared.identity.secret_versions import SecretUnavailable
    from functions.shared.identity.tokens import issue_access_token

    try:
        lockout.record_success(reservation)
    except LockoutUnavailable:
        logger.exception("sign-in success not recorded")
    _upgrade_hash(
        user.user_id,
        user.role,
        user.password_hash,
        credentials.password,
        unnormalised=check.matched_unnormalised,
    )
    try:
        issued = issue_access_token(user.user_id, user.role)
    except (SecretUnavailable, KeyMaterialError) as exc:
        logger.exception("cannot sign access tokens")
        raise ServiceUnavailable() from exc
    audit("sign_in", "success", user_id=user.user_id, source_ip=source_ip, kid=issued.kid)
    return TokenResponse(access_token=issued.token, expires_in=issued.expires_in)


def _reserve_attempt(lockout: SignInLockout, keys: LockoutKeys, source_ip: str) -> Reservation:
    """The right to check one password for these keys, or a 429 saying when to return.

    A locked key is refused on a read; otherwise the attempt is reserved with a
    conditional write before any password is checked, so that requests racing past
    the read still cannot check more than the threshold allows."""
    from functions.shared.identity.lockout import LockedOut, LockoutUnavailable

    try:
        account_wait, source_wait = lockout.waits(keys)
        wait, by_source = max(account_wait, source_wait), source_wait > 0
        if wait <= 0:
            return lockout.reserve(keys)
    except LockedOut as locked:
        wait, by_source = locked.retry_after_seconds, locked.by_source
    except LockoutUnavailable as exc:
        # Without the counters, guessing would be unlimited: refuse rather than guess.
        logger.exception("sign-in lockout store unavailable")
        raise ServiceUnavailable() from exc
    # Which lock refused it matters to the WAF responder: a source locked by its own
    # guesses is evidence against it; an account anyone's guesses locked is not (its
    # owner, signing in, would be blocked for someone else's attack).
    reason = names.SIGN_IN_SOURCE_LOCKED if by_source else names.SIGN_IN_ACCOUNT_LOCKED
    audit("sign_in", "failure", reason=reason, source_ip=source_ip)
    raise TooManyRequests(wait)


def _record_failure(lockout: SignInLockout, reservation: Reservation) -> None:
    from functions.shared.identity.lockout import LockoutUnavailable

    try:
        outcome = lockout.record_failure(reservation)
    except LockoutUnavailable:
        # The reserved attempt already counts as a failure; only a lock may be missing.
        logger.exception("sign-in failure lock not recorded")
        return
    if outcome.locked_for_seconds:
        metrics.add_metric(name=names.METRIC_LOCKOUTS, unit=MetricUnit.Count, value=1)


def _release_attempt(lockout: SignInLockout, reservation: Reservation) -> None:
    from functions.shared.identity.lockout import LockoutUnavailable

    try:
        lockout.release(reservation)
    except LockoutUnavailable:
        logger.exception("sign-in attempt not released")


def _upgrade_hash(
    user_id: UUID, role: str, stored: str, password: str, *, unnormalised: bool
) -> None:
    """Re-hash with today's cost after a raised scrypt setting, or from the normalised
    password when the stored hash was made from it as typed (`unnormalised`, before
    passwords were normalised); the sign-in proved the password."""
    from functions.api.identity.store import replace_password_hash
    from functions.shared.identity.passwords import hash_password, needs_rehash

    # An admin's hash is remade by an operator, never by the request tiers (the
    # database refuses it, sql/024): computing one here would only spend a scrypt.
    if role == "admin" or not (unnormalised or needs_rehash(stored)):
        return
    try:
        replace_password_hash(user_id, role, stored, hash_password(password))
    except Exception:  # noqa: BLE001 - the sign-in stands; the upgrade retries next time
        logger.exception("password hash upgrade failed", extra={"user_id": str(user_id)})


def who_am_i(caller: Caller) -> Me:
    return Me(user_id=str(caller.user_id), role=caller.role, authenticated_by=caller.kind)


def published_keys() -> dict[str, Any]:
    """The JWKS: both live keys (AWSCURRENT and, during a rotation's grace window,
    AWSPREVIOUS), so a relying party can verify every token the API still accepts.

    Read at most JWKS_MAX_AGE_SECONDS ago, not the signing cache's minute: right after
    a rotation another instance signs with the new key at once, and a relying party
    that meets its kid refetches this set to find it."""
    from functions.shared.identity.jwt_keys import KeyMaterialError, key_store
    from functions.shared.identity.secret_versions import SecretUnavailable

    try:
        return key_store().key_ring(max_age=JWKS_MAX_AGE_SECONDS).jwks()
    except (SecretUnavailable, KeyMaterialError) as exc:
        logger.exception("JWT keys unavailable")
        raise ServiceUnavailable() from exc
