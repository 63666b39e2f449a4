"""The admin chain: every `/admin` and `/monitoring` request needs all the locks.

In order: the IP allowlist (admin_allowlist.py, an earlier edge guard), an API
key with the `admin` scope whose owner is an admin, then a JWT whose role is
admin; on routes listed in ADMIN_SIGNED_ROUTES, also an HMAC signature of the
request. Each missing or failed lock is refused on its own (401 for a missing or
invalid credential, 403 for a valid one without the rights), writes an audit
row, and the answer never says which lock failed.

The request signature is keyed by SHA-256 of the API key's secret, which the
client derives from the key it holds and the server has stored: it binds the
method, path, body and time to the key holder, so a captured admin request
cannot be altered or replayed outside the tolerance window.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import re
import time

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from functions.api.identity.audit import audit
from functions.api.identity.caller import AuthenticatedCaller
from functions.api.middleware.authentication import (
    API_KEY_HEADER,
    BEARER_CHALLENGE,
    CredentialRefused,
    bearer_token,
    check_api_key,
    check_token,
    enforce_key_rate_limit,
    header,
)
from functions.api.middleware.request_limits import raw_body
from functions.shared.errors import Forbidden, Unauthorized
from functions.shared.identity.api_keys import SCOPE_ADMIN, ApiKeyRecord, parse_api_key
from functions.shared.settings import get_settings

SIGNATURE_HEADER = "x-signature"
SIGNATURE_TIMESTAMP_HEADER = "x-signature-timestamp"
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


def request_signature(
    key_secret_hash: bytes, method: str, path: str, timestamp: int, body: bytes
) -> str:
    signed = f"{timestamp}.{method.upper()}.{path}.".encode() + body
    digest = hmac.new(key_secret_hash, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign_admin_request(
    api_key: str, method: str, path: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """Headers a client adds to sign an admin request with its API key."""
    parsed = parse_api_key(api_key)
    if parsed is None:
        raise ValueError("not an API key")
    moment = int(time.time()) if timestamp is None else timestamp
    key = hashlib.sha256(parsed.secret.encode()).digest()
    return {
        "X-Signature-Timestamp": str(moment),
        "X-Signature": request_signature(key, method, path, moment, body),
    }


def route_needs_signature(method: str, path: str) -> bool:
    target = f"{method.upper()} {path}"
    return any(
        fnmatch.fnmatchcase(target, pattern) for pattern in get_settings().admin_signed_routes
    )


def _check_signature(event: APIGatewayProxyEvent, record: ApiKeyRecord) -> None:
    timestamp = header(event, SIGNATURE_TIMESTAMP_HEADER)
    signature = header(event, SIGNATURE_HEADER)
    if timestamp is None or signature is None:
        raise CredentialRefused("missing_signature", key_id=record.key_id)
    if not _TIMESTAMP.fullmatch(timestamp):
        raise CredentialRefused("bad_signature", key_id=record.key_id)
    if abs(time.time() - int(timestamp)) > get_settings().webhook_tolerance_seconds:
        raise CredentialRefused("stale_signature", key_id=record.key_id)
    expected = request_signature(
        record.secret_hash, event.http_method, event.path, int(timestamp), raw_body(event)
    )
    try:
        offered = base64.b64decode(signature.removeprefix("v1,"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CredentialRefused("bad_signature", key_id=record.key_id) from exc
    if not signature.startswith("v1,") or not hmac.compare_digest(
        base64.b64decode(expected[3:]), offered
    ):
        raise CredentialRefused("bad_signature", key_id=record.key_id)


def enforce_admin_chain(event: APIGatewayProxyEvent, source_ip: str) -> AuthenticatedCaller:
    record: ApiKeyRecord | None = None
    try:
        raw_key = header(event, API_KEY_HEADER)
        if raw_key is None:
            raise CredentialRefused("missing_api_key")
        record = check_api_key(raw_key)
        if SCOPE_ADMIN not in record.scopes or record.owner_role != "admin":
            raise CredentialRefused("not_admin_key", status=403, key_id=record.key_id)
        token = bearer_token(event)
        if token is None:
            raise CredentialRefused("missing_token", key_id=record.key_id)
        claims = check_token(token)
        if claims.role != "admin":
            raise CredentialRefused(
                "not_admin_user", status=403, key_id=record.key_id, user_id=claims.subject
            )
        if route_needs_signature(event.http_method, event.path):
            _check_signature(event, record)
    except CredentialRefused as refused:
        audit(
            "admin_access",
            "denied",
            reason=refused.reason,
            key_id=refused.key_id or (record.key_id if record else None),
            user_id=refused.user_id,
            source_ip=source_ip,
            persist=True,
            method=event.http_method,
            path=event.path,
        )
        if refused.status == 403:
            raise Forbidden() from refused
        raise Unauthorized(headers=BEARER_CHALLENGE) from refused
    enforce_key_rate_limit(record, source_ip)
    audit(
        "admin_access",
        "success",
        key_id=record.key_id,
        user_id=claims.subject,
        source_ip=source_ip,
        method=event.http_method,
        path=event.path,
    )
    return AuthenticatedCaller(
        user_id=claims.subject,
        role="admin",
        kind="jwt",
        key_id=record.key_id,
        scopes=record.scopes,
    )


def record_allowlist_refusal(event: APIGatewayProxyEvent, *, routed: bool) -> None:
    """Audit the first lock's refusal (the allowlist guard itself only logs).

    A row is written only for paths that lead somewhere: a scanner walking
    unknown /admin paths must not turn into a database write per request.
    """
    audit(
        "admin_access",
        "denied",
        reason="ip_not_allowlisted",
        source_ip=event.request_context.identity.source_ip or "",
        persist=routed,
        method=event.http_method,
        path=event.path,
    )
