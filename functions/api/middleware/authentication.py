"""Authentication at the edge: who is calling, decided before routing and validation.

Runs as an edge guard (see resolver.py): Powertools validates a body before any
`app.use()` middleware, and an unauthenticated caller must get 401, not a 422
that describes the body it may not send. Which credential a path needs is the
table in policies.py, by path prefix, so a new route under a protected prefix
cannot forget its check.

Each decision is audited (audit.py); refusals never say more than "authentication
is required" or "access denied".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn
from uuid import UUID

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from functions.api.identity.audit import audit
from functions.api.identity.caller import AuthenticatedCaller
from functions.api.middleware.policies import Policy, policy_for
from functions.api.middleware.request_limits import raw_body
from functions.shared import names
from functions.shared.caller import CallerRole
from functions.shared.errors import (
    API_KEY_CHALLENGE,
    BEARER_CHALLENGE,
    WEBHOOK_CHALLENGE,
    Forbidden,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from functions.shared.identity.api_keys import SCOPE_RECALLS_READ, ApiKeyRecord
from functions.shared.observability import logger, metrics
from functions.shared.settings import Settings, get_settings

if TYPE_CHECKING:
    # Types only: the token and webhook modules (and the key-material code they
    # pull in) load when a request first needs them, not in every cold start.
    from functions.shared.identity.tokens import AccessClaims
    from functions.shared.identity.webhooks import VerifiedWebhook

API_KEY_HEADER = "x-api-key"
INVALID_TOKEN_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="babyshield", error="invalid_token"'}
# A token whose signature verified and whose time ran out (pyjwt checks the signature
# before the claims): its holder learns what to do, and nothing it did not know (`exp`
# is readable in the token). Any other refusal stays generic.
EXPIRED_TOKEN_CHALLENGE = {
    "WWW-Authenticate": 'Bearer realm="babyshield", error="invalid_token", '
    'error_description="The access token expired"'
}
EXPIRED_TOKEN_MESSAGE = "The access token has expired: sign in again for a new one."  # noqa: S105  # nosec B105 - a message


@dataclass(frozen=True)
class RequestIdentity:
    caller: AuthenticatedCaller | None = None
    webhook: VerifiedWebhook | None = None


class CredentialRefused(Exception):
    """One credential failed; `reason` is the audit category, `status` 401 or 403."""

    def __init__(
        self,
        reason: str,
        *,
        status: int = 401,
        key_id: str | None = None,
        user_id: UUID | None = None,
    ):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.key_id = key_id
        self.user_id = user_id


def header(event: APIGatewayProxyEvent, name: str) -> str | None:
    """One header value; a header sent twice with different values is refused outright,
    since two layers could each read a different one."""
    # The event's own maps: Powertools' properties are case-insensitive dicts, which
    # keep one of `authorization` and `Authorization` sent side by side.
    raw = event.raw_event
    values: list[str] = []
    for key, found in (raw.get("multiValueHeaders") or {}).items():
        if key.lower() == name:
            values.extend(v for v in found or () if v is not None)
    if not values:
        for key, value in (raw.get("headers") or {}).items():
            if key.lower() == name and value is not None:
                values.append(value)
    if len(set(values)) > 1:
        raise CredentialRefused("ambiguous_header")
    return values[0] if values else None


def sent_method(event: APIGatewayProxyEvent) -> str:
    """The method the client sent. The resolver serves HEAD as GET by rewriting the
    event's httpMethod before the guards run; API Gateway's requestContext keeps the
    method that arrived, which a request signature and an audit row name."""
    if event.http_method == "GET" and event.request_context.http_method == "HEAD":
        return "HEAD"
    return event.http_method


def source_ip_of(event: APIGatewayProxyEvent) -> str:
    return event.request_context.identity.source_ip or ""


def bearer_token(event: APIGatewayProxyEvent) -> str | None:
    value = header(event, "authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise CredentialRefused("malformed_authorization")
    return token.strip()


def check_token(token: str) -> AccessClaims:
    from functions.shared.identity.jwt_keys import KeyMaterialError
    from functions.shared.identity.secret_versions import SecretUnavailable
    from functions.shared.identity.tokens import TokenRejected, verify_access_token

    try:
        return verify_access_token(token)
    except TokenRejected as rejected:
        raise CredentialRefused(rejected.reason) from rejected
    except (SecretUnavailable, KeyMaterialError) as exc:
        logger.exception("JWT keys unavailable")
        raise ServiceUnavailable() from exc


def check_api_key(raw: str) -> ApiKeyRecord:
    from functions.api.identity.store import api_key_record
    from functions.shared.identity.api_keys import ApiKeyRejected
    from functions.shared.identity.api_keys import check_api_key as check

    try:
        return check(raw, api_key_record)
    except ApiKeyRejected as rejected:
        raise CredentialRefused(rejected.reason, key_id=rejected.key_id) from rejected


def enforce_key_rate_limit(record: ApiKeyRecord, source_ip: str, *, persist: bool = False) -> None:
    """The key's per-minute limit, counted across every Lambda instance.

    A rotated key and its successor, both working during the grace period, share
    one budget: the count is per rotation chain (ApiKeyRecord.rate_limit_id), and
    the limit is the smallest of the chain's live keys. Both come with the key
    lookup, so this is still the one DynamoDB write per request.

    If DynamoDB cannot be asked, the request goes through (logged and counted):
    the WAF's per-IP rate rule still stands in front, and a limiter outage
    should not take every partner offline. After such a failure this instance
    skips DynamoDB for a few seconds (rate_limit.PauseAfterFailure), so an outage
    adds its wait to one request per instance, not to every one.

    `persist`: the refusal also gets an audit_log row, as every admin-route refusal
    does (the admin chain passes it).
    """
    from functions.shared.identity.rate_limit import (
        FixedWindowRateLimiter,
        RateLimitUnavailable,
    )

    limit = record.applied_rate_limit_per_minute
    try:
        decision = FixedWindowRateLimiter().hit(f"apikey#{record.rate_limit_id}", limit)
    except RateLimitUnavailable as unavailable:
        if unavailable.paused:
            logger.warning(
                "rate limiter paused after a failure; request allowed",
                extra={"key_id": record.key_id},
            )
        else:
            logger.exception(
                "rate limiter unavailable; request allowed", extra={"key_id": record.key_id}
            )
        metrics.add_metric(
            name=names.METRIC_RATE_LIMITER_UNAVAILABLE, unit=MetricUnit.Count, value=1
        )
        return
    if not decision.allowed:
        audit(
            "rate_limit",
            "failure",
            reason="over_limit",
            key_id=record.key_id,
            user_id=record.owner_id,
            source_ip=source_ip,
            limit=limit,
            counted_as=record.rate_limit_id,
            persist=persist,
        )
        raise TooManyRequests(decision.retry_after_seconds)


def caller_from_token(claims: AccessClaims, live_role: str | None = None) -> AuthenticatedCaller:
    """The token's subject; with `live_role` (the account's role read just now), an
    admin only when both say so: a token never grants more than it says, nor more
    than the account has today."""
    is_admin = claims.role == "admin" and live_role in (None, "admin")
    role: CallerRole = "admin" if is_admin else "user"
    return AuthenticatedCaller(user_id=claims.subject, role=role, kind="jwt")


def caller_from_key(record: ApiKeyRecord) -> AuthenticatedCaller:
    role: CallerRole = "admin" if record.owner_role == "admin" else "user"
    return AuthenticatedCaller(
        user_id=record.owner_id,
        role=role,
        kind="api_key",
        key_id=record.key_id,
        scopes=record.scopes,
    )


def _live_role(claims: AccessClaims) -> str:
    """The role of the account behind a verified token, as the database holds it now.
    A token lives up to its lifetime whatever happens to the account: one deleted
    meanwhile is refused like a forged token."""
    from functions.api.identity.store import account_role

    role = account_role(claims.subject)
    if role is None:
        raise CredentialRefused("account_gone", user_id=claims.subject)
    return role


def refuse_token(refused: CredentialRefused) -> NoReturn:
    """The 401 for a refused bearer token, wherever one is refused (RFC 6750 3.1): a
    missing token is asked for, an expired one is told so (EXPIRED_TOKEN_*), any
    other is `error="invalid_token"` and nothing more."""
    if refused.reason == "expired":
        raise Unauthorized(EXPIRED_TOKEN_MESSAGE, headers=EXPIRED_TOKEN_CHALLENGE) from refused
    challenge = BEARER_CHALLENGE if refused.reason == "missing_token" else INVALID_TOKEN_CHALLENGE
    raise Unauthorized(headers=challenge) from refused


def _token_caller(
    event: APIGatewayProxyEvent, source_ip: str, *, required: bool, live_account: bool = False
) -> AuthenticatedCaller | None:
    """The bearer token's caller. With `live_account` (routes a token alone opens, which
    read the database anyway) the account must still exist, and its role today bounds
    the token's."""
    try:
        token = bearer_token(event)
        if token is None:
            if not required:
                return None
            raise CredentialRefused("missing_token")
        claims = check_token(token)
        live_role = _live_role(claims) if live_account else None
    except CredentialRefused as refused:
        audit(
            "token",
            "failure",
            reason=refused.reason,
            user_id=refused.user_id,
            source_ip=source_ip,
            path=event.path,
        )
        refuse_token(refused)
    audit("token", "success", user_id=claims.subject, source_ip=source_ip, kid=claims.kid)
    return caller_from_token(claims, live_role)


def _key_caller(
    event: APIGatewayProxyEvent,
    raw: str,
    source_ip: str,
    *,
    with_token: AuthenticatedCaller | None = None,
) -> AuthenticatedCaller:
    """The key's owner; with a token presented too, its subject must be that owner.
    Refused before the key's rate limit is spent or its success audited."""
    try:
        record = check_api_key(raw)
        if with_token is not None and with_token.user_id != record.owner_id:
            raise CredentialRefused("credentials_disagree", key_id=record.key_id)
        if SCOPE_RECALLS_READ not in record.scopes:
            raise CredentialRefused("missing_scope", status=403, key_id=record.key_id)
    except CredentialRefused as refused:
        audit(
            "api_key",
            "failure",
            reason=refused.reason,
            key_id=refused.key_id,
            source_ip=source_ip,
            path=event.path,
        )
        if refused.status == 403:
            raise Forbidden() from refused
        raise Unauthorized(headers=API_KEY_CHALLENGE) from refused
    enforce_key_rate_limit(record, source_ip)
    audit("api_key", "success", key_id=record.key_id, user_id=record.owner_id, source_ip=source_ip)
    return caller_from_key(record)


def _uses_test_identity(event: APIGatewayProxyEvent, settings: Settings) -> bool:
    """The database tests' stand-in caller (caller_context.py), off outside tests."""
    from functions.api.caller_context import TEST_USER_HEADER

    return settings.test_callers and header(event, TEST_USER_HEADER) is not None


def verify_webhook_request(event: APIGatewayProxyEvent, source_ip: str) -> VerifiedWebhook:
    from functions.shared.identity.secret_versions import SecretUnavailable
    from functions.shared.identity.webhooks import (
        WebhookRejected,
        live_webhook_keys,
        verify_webhook,
    )

    try:
        verified = verify_webhook(
            dict(event.headers or {}),
            raw_body(event),
            live_webhook_keys,
            tolerance_seconds=get_settings().webhook_tolerance_seconds,
        )
    except SecretUnavailable as exc:
        logger.exception("webhook secret unavailable")
        raise ServiceUnavailable() from exc
    except WebhookRejected as rejected:
        audit("webhook", "failure", reason=rejected.reason, source_ip=source_ip, path=event.path)
        raise Unauthorized(headers=WEBHOOK_CHALLENGE) from rejected
    return verified


def authenticate(event: APIGatewayProxyEvent) -> RequestIdentity:
    """The identity of this request under its path's policy, or a 401/403/429."""
    settings = get_settings()
    policy = policy_for(event.path, settings)
    if policy is Policy.PUBLIC:
        return RequestIdentity()
    source_ip = source_ip_of(event)
    if policy is Policy.ADMIN:
        from functions.api.middleware.admin_chain import enforce_admin_chain

        return RequestIdentity(caller=enforce_admin_chain(event, source_ip))
    if policy is Policy.WEBHOOK:
        return RequestIdentity(webhook=verify_webhook_request(event, source_ip))
    try:
        raw_key = header(event, API_KEY_HEADER)
    except CredentialRefused as refused:
        audit("api_key", "failure", reason=refused.reason, source_ip=source_ip)
        raise Unauthorized(headers=API_KEY_CHALLENGE) from refused
    if policy is Policy.USER:
        if _uses_test_identity(event, settings) and header(event, "authorization") is None:
            return RequestIdentity()
        return RequestIdentity(
            caller=_token_caller(event, source_ip, required=True, live_account=True)
        )
    # Policy.OPTIONAL: anonymous is fine, a presented credential must be valid. Both,
    # when a key and a token come together (the token first: it needs no database),
    # and they must name one user: the key is the caller, the token is not ignored.
    token_caller = _token_caller(event, source_ip, required=False)
    if raw_key is None:
        return RequestIdentity(caller=token_caller)
    return RequestIdentity(caller=_key_caller(event, raw_key, source_ip, with_token=token_caller))
