"""The admin chain: every `/admin` and `/monitoring` request needs all the locks.

In order: the IP allowlist (admin_allowlist.py, an earlier edge guard), an API
key with the `admin` scope whose owner is an admin, then a JWT whose role is
admin and whose subject owns that key; on routes listed in ADMIN_SIGNED_ROUTES,
the key is proven by an HMAC signature of the request instead of being sent.
Each missing or failed lock is refused on its own and writes an audit row. A
403, for a valid credential without the rights (a key without the admin scope or
not an admin's, a token not its owner's or not an admin's), is the one "Access
denied." whichever it was. A 401 names the credential to fix in its challenge,
as everywhere else (authentication.py): the key's (`ApiKey`) for a missing or
refused key or request signature, but on a signed route, which refuses X-API-Key,
the signature's (`ApiKey-Signature`, naming its headers); the token's for a missing
or refused token (`error="invalid_token"`; an expired one says so). That tells no
more than the API answers already: /recalls whether a key is valid, /me whether a token is,
the 403 whether a valid key is an admin's, and only to an allowlisted address:
the allowlist refuses first, the same way whatever credentials came.

A signed request (v2) carries the key id, never its secret:

    X-API-Key-Id:          <key id>              (the 16 hex digits of bs_<key id>_<secret>)
    X-Signature-Timestamp: <Unix seconds>
    X-Signature-Nonce:     <16-64 of A-Z a-z 0-9 _ ->, fresh for every request
    X-Signature:           v2,<base64 HMAC-SHA256 of the string to sign>

keyed by SHA-256 of the secret, which is what the server stores. The string to
sign is these eight fields, one per line (joined by a line feed):

    v2, timestamp, nonce, key id, METHOD, path, canonical query, hex SHA-256 of the body

The path has repeated slashes collapsed and a trailing slash dropped (as the
resolver routes it). The canonical query is every decoded name/value pair (as
API Gateway delivers them in multiValueQueryStringParameters), each side
percent-encoded (UTF-8; only RFC 3986 unreserved characters left as they are),
the `name=value` strings sorted by code point and joined by "&"; empty when
there is none. Every field but the path is newline-free and
fixed in shape, so the string parses one way only. Each accepted nonce is
recorded in the webhook-nonce table (the webhooks' conditional put) until the
timestamp leaves the window, so a captured request cannot be replayed inside
it either; outside it, the timestamp check refuses it.

Any admin route accepts a signed request; a signed route accepts nothing else,
and refuses an X-API-Key there outright, since sending it would expose the secret.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl, quote

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from functions.api.identity.audit import audit
from functions.api.identity.caller import AuthenticatedCaller
from functions.api.middleware.authentication import (
    API_KEY_HEADER,
    CredentialRefused,
    bearer_token,
    check_api_key,
    check_token,
    enforce_key_rate_limit,
    header,
    refuse_token,
    sent_method,
)
from functions.api.middleware.request_limits import raw_body
from functions.shared.errors import (
    ADMIN_SIGNATURE_CHALLENGE,
    API_KEY_CHALLENGE,
    Forbidden,
    ServiceUnavailable,
    Unauthorized,
)
from functions.shared.identity.api_keys import (
    KEY_ID_PATTERN,
    SCOPE_ADMIN,
    ApiKeyRecord,
    ApiKeyRejected,
    check_key_holder,
    hash_secret,
    parse_api_key,
)
from functions.shared.observability import logger
from functions.shared.settings import canonical_path, get_settings

API_KEY_ID_HEADER = "x-api-key-id"
SIGNATURE_HEADER = "x-signature"
SIGNATURE_TIMESTAMP_HEADER = "x-signature-timestamp"
SIGNATURE_NONCE_HEADER = "x-signature-nonce"
SIGNATURE_VERSION = "v2"
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
# RFC 3986 unreserved characters stay as they are; everything else is %XX of its UTF-8.
_UNRESERVED = "-_.~"


def _encode(text: str) -> str:
    # surrogatepass: an event may carry any string, and the signature must not crash on it.
    return quote(text.encode("utf-8", "surrogatepass"), safe=_UNRESERVED)


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    return "&".join(sorted(f"{_encode(name)}={_encode(value)}" for name, value in pairs))


def _query_pairs(event: APIGatewayProxyEvent) -> list[tuple[str, str]]:
    multi = event.multi_value_query_string_parameters
    if multi:
        return [(name, value) for name, values in multi.items() for value in values or ()]
    return list((event.query_string_parameters or {}).items())


def string_to_sign(
    *,
    key_id: str,
    method: str,
    path: str,
    query: str,
    timestamp: int,
    nonce: str,
    body: bytes,
) -> bytes:
    """The v2 string to sign; `query` is already canonical (canonical_query)."""
    lines = (
        SIGNATURE_VERSION,
        str(timestamp),
        nonce,
        key_id,
        method.upper(),
        canonical_path(path),
        query,
        hashlib.sha256(body).hexdigest(),
    )
    return "\n".join(lines).encode("utf-8", "surrogatepass")


def request_signature(signing_key: bytes, signed: bytes) -> str:
    digest = hmac.new(signing_key, signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION}," + base64.b64encode(digest).decode("ascii")


def sign_admin_request(
    api_key: str,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    query: str | Sequence[tuple[str, str]] = "",
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Headers that prove an admin request with `api_key` without sending its secret.

    Send them instead of X-API-Key (with the access token as usual). `query` is
    the query string as sent (spaces as %20: API Gateway may not read `+` as a
    space) or its decoded name/value pairs. Each call makes a fresh nonce, and
    the server accepts each signature once.
    """
    parsed = parse_api_key(api_key)
    if parsed is None:
        raise ValueError("not an API key")
    pairs = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else query
    moment = int(time.time()) if timestamp is None else timestamp
    once = secrets.token_urlsafe(24) if nonce is None else nonce
    signed = string_to_sign(
        key_id=parsed.key_id,
        method=method,
        path=path,
        query=canonical_query(pairs),
        timestamp=moment,
        nonce=once,
        body=body,
    )
    return {
        "X-API-Key-Id": parsed.key_id,
        "X-Signature-Timestamp": str(moment),
        "X-Signature-Nonce": once,
        "X-Signature": request_signature(hash_secret(parsed.secret), signed),
    }


def route_needs_signature(method: str, path: str) -> bool:
    """Whether an ADMIN_SIGNED_ROUTES pattern matches, on the path as it is routed.

    fnmatch patterns, so `*` also crosses `/`: `POST /admin/*` is every admin POST.
    Matching wider than a route only asks for more signatures, never fewer.
    """
    target = f"{method.upper()} {canonical_path(path)}"
    return any(
        fnmatch.fnmatchcase(target, pattern) for pattern in get_settings().admin_signed_routes
    )


def _signed_key(event: APIGatewayProxyEvent, key_id: str) -> tuple[ApiKeyRecord, tuple[str, int]]:
    """The key a signed request proves, with its nonce and timestamp to record."""
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise CredentialRefused("malformed")
    timestamp_text = header(event, SIGNATURE_TIMESTAMP_HEADER)
    nonce = header(event, SIGNATURE_NONCE_HEADER)
    signature = header(event, SIGNATURE_HEADER)
    if timestamp_text is None or nonce is None or signature is None:
        raise CredentialRefused("missing_signature", key_id=key_id)
    version, _, encoded = signature.partition(",")
    if (
        version != SIGNATURE_VERSION
        or not _TIMESTAMP.fullmatch(timestamp_text)
        or not _NONCE.fullmatch(nonce)
    ):
        raise CredentialRefused("bad_signature", key_id=key_id)
    timestamp = int(timestamp_text)
    if abs(time.time() - timestamp) > get_settings().webhook_tolerance_seconds:
        raise CredentialRefused("stale_signature", key_id=key_id)
    try:
        offered = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CredentialRefused("bad_signature", key_id=key_id) from exc

    from functions.api.identity.store import api_key_record

    record = api_key_record(key_id)
    signed = string_to_sign(
        key_id=key_id,
        method=sent_method(event),
        path=event.path,
        query=canonical_query(_query_pairs(event)),
        timestamp=timestamp,
        nonce=nonce,
        body=raw_body(event),
    )
    try:
        # The same checks as a key sent whole (api_keys.check_api_key), with the
        # signature as the proof of holding the secret.
        proven = check_key_holder(
            key_id,
            record,
            lambda stored: hmac.compare_digest(
                hmac.new(stored, signed, hashlib.sha256).digest(), offered
            ),
            "bad_signature",
        )
    except ApiKeyRejected as rejected:
        raise CredentialRefused(rejected.reason, key_id=key_id) from rejected
    return proven, (nonce, timestamp)


def _claim_nonce(key_id: str, nonce: str, timestamp: int) -> None:
    """Record the nonce once, through the webhooks' replay store (same table and put,
    its own key space: no webhook id can use up a nonce in advance)."""
    from functions.shared.identity.webhooks import (
        ADMIN_NONCE_SPACE,
        VerifiedWebhook,
        WebhookReplayed,
        claim_message_id,
    )

    try:
        claim_message_id(VerifiedWebhook(f"{key_id}#{nonce}", timestamp), space=ADMIN_NONCE_SPACE)
    except WebhookReplayed as exc:
        raise CredentialRefused("replayed_signature", key_id=key_id) from exc
    except Exception as exc:
        # Fail closed: without the record a captured request could be replayed.
        logger.exception("admin signature nonce store unavailable")
        raise ServiceUnavailable() from exc


def _key_id_of(raw_key: str) -> str | None:
    parsed = parse_api_key(raw_key)
    return parsed.key_id if parsed else None


def enforce_admin_chain(event: APIGatewayProxyEvent, source_ip: str) -> AuthenticatedCaller:
    record: ApiKeyRecord | None = None
    to_claim: tuple[str, int] | None = None
    # The credential being checked, for the 401's challenge: reasons alone do not say
    # ("malformed", "expired" and "bad_signature" are refusals of a key and of a token).
    checking_token = False
    needs_signature = route_needs_signature(event.http_method, event.path)
    try:
        raw_key = header(event, API_KEY_HEADER)
        key_id = header(event, API_KEY_ID_HEADER)
        if raw_key is not None and needs_signature:
            # The secret must never travel on a signed route; the key is refused unchecked
            # (its id is audited, so the exposed key can be found and rotated).
            raise CredentialRefused("secret_sent_on_signed_route", key_id=_key_id_of(raw_key))
        if raw_key is not None and key_id is not None:
            raise CredentialRefused("key_and_key_id", key_id=_key_id_of(raw_key))
        if key_id is not None:
            record, to_claim = _signed_key(event, key_id)
        elif needs_signature:
            raise CredentialRefused("missing_signature")
        elif raw_key is None:
            raise CredentialRefused("missing_api_key")
        else:
            record = check_api_key(raw_key)
        if SCOPE_ADMIN not in record.scopes or record.owner_role != "admin":
            raise CredentialRefused("not_admin_key", status=403, key_id=record.key_id)
        checking_token = True
        token = bearer_token(event)
        if token is None:
            raise CredentialRefused("missing_token", key_id=record.key_id)
        claims = check_token(token)
        checking_token = False
        if claims.role != "admin":
            raise CredentialRefused(
                "not_admin_user", status=403, key_id=record.key_id, user_id=claims.subject
            )
        if claims.subject != record.owner_id:
            # One person behind both: no pairing a colleague's key with one's own token.
            raise CredentialRefused(
                "key_owner_mismatch", status=403, key_id=record.key_id, user_id=claims.subject
            )
        if to_claim is not None:
            _claim_nonce(record.key_id, *to_claim)
    except CredentialRefused as refused:
        audit(
            "admin_access",
            "denied",
            reason=refused.reason,
            key_id=refused.key_id or (record.key_id if record else None),
            user_id=refused.user_id,
            source_ip=source_ip,
            persist=True,
            method=sent_method(event),
            path=event.path,
        )
        if refused.status == 403:
            raise Forbidden() from refused
        if checking_token:
            refuse_token(refused)
        # The same challenge whatever the key or signature did wrong: what to send, not why.
        key_challenge = ADMIN_SIGNATURE_CHALLENGE if needs_signature else API_KEY_CHALLENGE
        raise Unauthorized(headers=key_challenge) from refused
    enforce_key_rate_limit(record, source_ip, persist=True)
    audit(
        "admin_access",
        "success",
        key_id=record.key_id,
        user_id=claims.subject,
        source_ip=source_ip,
        method=sent_method(event),
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
        method=sent_method(event),
        path=event.path,
    )
