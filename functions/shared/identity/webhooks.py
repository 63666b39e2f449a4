"""Standard Webhooks signature verification (https://www.standardwebhooks.com/).

A message carries `webhook-id`, `webhook-timestamp` (Unix seconds) and
`webhook-signature`: space-separated `v1,<base64 HMAC-SHA256>` entries over
`<id>.<timestamp>.<body>`, keyed by the secret's bytes (`whsec_<base64>`).
Several entries let a sender sign with old and new secrets during a rotation;
several secrets here let this receiver accept both sides of its own rotation
(AWSCURRENT and AWSPREVIOUS of the webhook secret). A signature that none of
the cached secrets matches reloads them once (rate-limited by the cache), so a
secret that became AWSCURRENT a moment ago is accepted at once.

The body is verified as raw bytes before anything parses it. Replays inside
the tolerance window are stopped by recording each `webhook-id` in DynamoDB
with a conditional put; outside the window the timestamp check refuses them.
A delivery's record is a lease until its recall is stored (`settle_message_id`):
a function killed in between (its timeout, an out-of-memory) leaves an id the
sender's retry may take over once the lease ends, not one refused until the
record expires. The record also holds a digest of the event: an id names one
event, so another event under it is refused as such (`WebhookIdReused`), never
taken for a replay of a recall stored already, and never takes a lease over.

`VerifiedWebhook.secret_version` names the version of the secret whose key
verified a delivery; webhook_signers.py records it for the rotation guard.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from functions.shared import names
from functions.shared.identity import aws
from functions.shared.identity.secret_versions import (
    SecretVersions,
    SecretVersionsCache,
    secret_cache,
)
from functions.shared.settings import get_settings

SECRET_PREFIX = "whsec_"  # noqa: S105  # nosec B105 - the format prefix, not a secret
SIGNATURE_VERSION = "v1"
# Printable ASCII, no spaces: the id is part of the signed content and of a DynamoDB key.
MESSAGE_ID_MAX_LENGTH = 256
MESSAGE_ID_PATTERN = re.compile(rf"[\x21-\x7e]{{1,{MESSAGE_ID_MAX_LENGTH}}}")
TIMESTAMP_PATTERN = re.compile(r"[0-9]{1,12}")
# A sender has no reason to send more; bounds the HMAC comparisons per request.
MAX_SIGNATURES = 10
# The replay record's random token: which claim wrote it.
CLAIM_ATTRIBUTE = "claim"
# Until when an unsettled claim holds its id (Unix seconds); a settled or final
# claim has none.
LEASE_ATTRIBUTE = "lease_until"
# A digest of the event the id was claimed for (the caller's; records written
# before it was kept, and admin nonces, have none).
CONTENT_ATTRIBUTE = "content_sha256"
# Longer than the API function may run (29 s, API Gateway's limit), so a delivery
# still running is never taken over; a killed one frees its id for the next retry.
WEBHOOK_LEASE_SECONDS = 60
# Key prefixes in the replay table: a webhook id and an admin request's nonce never
# share a key, whatever text the sender puts in its id.
WEBHOOK_ID_SPACE = "webhook"
ADMIN_NONCE_SPACE = "admin-nonce"


class WebhookRejected(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class VerifiedWebhook:
    message_id: str
    timestamp: int
    # The version of the webhook secret whose key verified the signature (None when
    # the keys did not come from the secret, as in the rotation's own self-test).
    secret_version: str | None = None
    # That version was AWSPREVIOUS as this instance read the secret: the sender has not
    # switched to the current one (webhook_signers.record_secret_use).
    signed_with_previous: bool = False


def generate_webhook_secret_value() -> str:
    """A fresh secret in the secret's JSON format: {"secret": "whsec_<base64>"}."""
    raw = secrets.token_bytes(32)
    return json.dumps({"secret": SECRET_PREFIX + base64.b64encode(raw).decode("ascii")})


def decode_secret(text: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret."""
    body = text[len(SECRET_PREFIX) :] if text.startswith(SECRET_PREFIX) else text
    try:
        key = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("webhook secret is not base64") from exc
    if len(key) < 16:
        raise ValueError("webhook secret is too short")
    return key


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` entry for one secret, as a sender computes it."""
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest.digest()).decode('ascii')}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _signatures(header: str) -> list[bytes]:
    found = []
    for entry in header.split(" ")[:MAX_SIGNATURES]:
        version, _, encoded = entry.partition(",")
        if version != SIGNATURE_VERSION or not encoded:
            continue
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found


def verify_webhook(
    headers: Mapping[str, str],
    body: bytes,
    keys: Iterable[bytes] | Callable[[], Iterable[bytes]],
    *,
    tolerance_seconds: int,
    now: float | None = None,
) -> VerifiedWebhook:
    """Check id, timestamp and signature; WebhookRejected(reason) on any failure.

    `keys` may be a callable: it is called only once the headers are well formed
    and fresh, so junk requests never cost a secret lookup. Keys read from the
    secret (a `WebhookKeyRing`) get a second chance when no signature matches:
    the secret may have rotated since this instance cached it.
    """
    message_id = _header(headers, "webhook-id")
    timestamp_text = _header(headers, "webhook-timestamp")
    signature_header = _header(headers, "webhook-signature")
    if not message_id or not timestamp_text or not signature_header:
        raise WebhookRejected("missing_headers")
    if not MESSAGE_ID_PATTERN.fullmatch(message_id):
        raise WebhookRejected("invalid_id")
    if not TIMESTAMP_PATTERN.fullmatch(timestamp_text):
        raise WebhookRejected("invalid_timestamp")
    timestamp = int(timestamp_text)
    moment = time.time() if now is None else now
    if abs(moment - timestamp) > tolerance_seconds:
        raise WebhookRejected("stale_timestamp")
    offered = _signatures(signature_header)
    if not offered:
        raise WebhookRejected("invalid_signature_header")
    live = keys() if callable(keys) else keys
    ring, index = live, _matching_key(live, offered, message_id, timestamp, body)
    if index is None:
        newer = live.refreshed() if isinstance(live, WebhookKeyRing) else None
        if newer is not None:
            ring, index = newer, _matching_key(newer, offered, message_id, timestamp, body)
        if index is None:
            raise WebhookRejected("bad_signature")
    if not isinstance(ring, WebhookKeyRing):
        return VerifiedWebhook(message_id, timestamp)
    version = ring.key_versions[index]
    return VerifiedWebhook(
        message_id,
        timestamp,
        version,
        signed_with_previous=version != ring.versions.current.version_id,
    )


def _matching_key(
    keys: Iterable[bytes], offered: Sequence[bytes], message_id: str, timestamp: int, body: bytes
) -> int | None:
    """The position of the first key that made one of the signatures, or None.

    Every comparison runs; no early exit tells which secret or entry matched. A
    sender signing with both secrets during its switch counts as using the first
    (AWSCURRENT for a key ring)."""
    found: int | None = None
    for index, key in enumerate(keys):
        expected = base64.b64decode(sign(key, message_id, timestamp, body).partition(",")[2])
        matched = False
        for candidate in offered:
            matched |= hmac.compare_digest(expected, candidate)
        if matched and found is None:
            found = index
    return found


@dataclass(frozen=True)
class WebhookKeyRing:
    """The HMAC keys of the webhook secret's live versions, as this instance cached them.

    Iterates as the keys, AWSCURRENT first; `key_versions` holds the version id
    of each key, in the same order. Its `refreshed()` is the reload on a miss that
    JWT verification does on an unknown kid.
    """

    secret_id: str
    versions: SecretVersions
    keys: tuple[bytes, ...] = field(repr=False)
    key_versions: tuple[str, ...]
    cache: SecretVersionsCache = field(repr=False, compare=False)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def refreshed(self) -> WebhookKeyRing | None:
        """The keys after an early reload, or None if no other version can be had now.

        A sender signs with the new secret as soon as a rotation makes it
        AWSCURRENT; until this instance's cache expires, only a reload lets it
        accept those messages. The cache limits these reloads (once per 5 s per
        secret), so forged signatures cannot become a Secrets Manager call each.
        """
        versions = self.cache.refresh(self.secret_id)
        if versions is None or _version_ids(versions) == _version_ids(self.versions):
            return None
        return _key_ring(self.secret_id, versions, self.cache)


def _version_ids(versions: SecretVersions) -> tuple[str, ...]:
    return tuple(version.version_id for version in versions.live())


def _key_ring(
    secret_id: str, versions: SecretVersions, cache: SecretVersionsCache
) -> WebhookKeyRing:
    keys: list[bytes] = []
    key_versions: list[str] = []
    for version in versions.live():
        try:
            keys.append(decode_secret(str(json.loads(version.value)["secret"])))
        except (ValueError, KeyError, TypeError):
            # A malformed old version must not take the current one down with it.
            continue
        key_versions.append(version.version_id)
    return WebhookKeyRing(secret_id, versions, tuple(keys), tuple(key_versions), cache)


def live_webhook_keys(cache: SecretVersionsCache | None = None) -> WebhookKeyRing:
    """HMAC keys of the webhook secret's AWSCURRENT and AWSPREVIOUS versions."""
    settings = get_settings()
    cache = cache or secret_cache
    versions = cache.get(settings.webhook_secret_id, settings.secret_cache_seconds)
    return _key_ring(settings.webhook_secret_id, versions, cache)


class WebhookReplayed(Exception):
    """The webhook-id was already received inside the tolerance window."""


class WebhookInProgress(WebhookReplayed):
    """Another delivery of the id holds an unexpired lease: it is still running, or
    was killed less than a lease ago. A retry after the lease may take it over."""


class WebhookIdReused(WebhookReplayed):
    """The id is held for another event: not a replay, whose recall was stored, nor
    a delivery a later retry may take over. The sender reuses ids, or someone holds
    its secret."""


def new_claim_token() -> str:
    """A fresh token for `claim_message_id`: which claim wrote an id's record."""
    return secrets.token_hex(16)


def claim_message_id(
    message: VerifiedWebhook,
    *,
    now: float | None = None,
    space: str = WEBHOOK_ID_SPACE,
    lease_seconds: int | None = None,
    claim: str | None = None,
    content: str | None = None,
) -> str:
    """Record the id in `space` and return this claim's token, or raise
    WebhookReplayed if the id is already recorded there by another claim.

    Kept until the timestamp leaves the tolerance window (plus a margin), after
    which the timestamp check alone refuses a replay. The token tells this claim
    from any other: when the answer to the put is lost after DynamoDB applied it,
    the client's retry meets the item it wrote itself, which is no replay.

    With `lease_seconds` the claim is a lease until `settle_message_id` makes it
    final: past the lease, another claim of the id replaces it. Without, it is
    final at once (an admin request's nonce is used up by being presented).

    `claim` is the token to write (a fresh one by default). A caller passes its own
    when it must clean up after a put whose outcome it never learned: every attempt
    failed without an answer, and DynamoDB may have applied one of them.

    `content` is a digest of the event delivered: held by another claim, a different
    one raises WebhookIdReused, and a lease that ran out passes only to the same one.
    """
    settings = get_settings()
    moment = int(time.time() if now is None else now)
    expires_at = max(moment, message.timestamp) + settings.webhook_tolerance_seconds + 60
    claim = new_claim_token() if claim is None else claim
    item = {
        names.WEBHOOK_NONCE_PARTITION_KEY: {"S": f"{space}#{message.message_id}"},
        names.TTL_ATTRIBUTE: {"N": str(expires_at)},
        CLAIM_ATTRIBUTE: {"S": claim},
    }
    if lease_seconds is not None:
        item[LEASE_ATTRIBUTE] = {"N": str(moment + lease_seconds)}
    # An expired record that DynamoDB's TTL sweep has not removed yet is free to
    # reuse, and so is a lease that ran out (a comparison with a missing attribute
    # is false: a settled claim never runs out).
    lapsed = "#lease < :now"
    attribute_names = {
        "#pk": names.WEBHOOK_NONCE_PARTITION_KEY,
        "#ttl": names.TTL_ATTRIBUTE,
        "#lease": LEASE_ATTRIBUTE,
    }
    values = {":now": {"N": str(moment)}}
    if content is not None:
        item[CONTENT_ATTRIBUTE] = {"S": content}
        # Only to the same event: the killed delivery's retry, not another event that
        # would leave the retry refused as a replay and its recall lost.
        lapsed = "(#lease < :now AND (attribute_not_exists(#content) OR #content = :content))"
        attribute_names["#content"] = CONTENT_ATTRIBUTE
        values[":content"] = {"S": content}
    try:
        aws.dynamodb().put_item(
            TableName=settings.webhook_nonce_table,
            Item=item,
            ConditionExpression=f"attribute_not_exists(#pk) OR #ttl < :now OR {lapsed}",
            ExpressionAttributeNames=attribute_names,
            ExpressionAttributeValues=values,
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except Exception as exc:
        if aws.error_code(exc) != "ConditionalCheckFailedException":
            raise
        held_item = aws.condition_item(exc)
        held = held_item.get(CLAIM_ATTRIBUTE, {}).get("S")
        if not (isinstance(held, str) and hmac.compare_digest(held, claim)):
            held_content = held_item.get(CONTENT_ATTRIBUTE, {}).get("S")
            if (
                content is not None
                and isinstance(held_content, str)
                and not hmac.compare_digest(held_content, content)
            ):
                raise WebhookIdReused(message.message_id) from exc
            if LEASE_ATTRIBUTE in held_item:
                raise WebhookInProgress(message.message_id) from exc
            raise WebhookReplayed(message.message_id) from exc
    return claim


def message_id_taken(message: VerifiedWebhook, *, now: float | None = None) -> bool:
    """Whether a delivery of the id holds its record: settled (its recall is stored)
    or leased (a delivery of it is running). True exactly when `claim_message_id`
    would refuse it as a replay; an expired record or a lease that ran out is free."""
    answer = aws.dynamodb().get_item(
        TableName=get_settings().webhook_nonce_table,
        Key={names.WEBHOOK_NONCE_PARTITION_KEY: {"S": f"{WEBHOOK_ID_SPACE}#{message.message_id}"}},
        # The replay may follow the stored delivery by milliseconds.
        ConsistentRead=True,
    )
    item = answer.get("Item")
    if not item:
        return False
    moment = int(time.time() if now is None else now)
    expires = item.get(names.TTL_ATTRIBUTE, {}).get("N")
    lease = item.get(LEASE_ATTRIBUTE, {}).get("N")
    # claim_message_id's condition, read the other way round.
    return not (
        (expires is not None and int(expires) < moment)
        or (lease is not None and int(lease) < moment)
    )


def settle_message_id(message: VerifiedWebhook, claim: str) -> None:
    """Make a leased claim final once its delivery's work is stored: from now on the
    id is a replay until its record expires. Gone (another claim took over after
    this one's lease) changes nothing."""
    request = _own_claim(message, claim)
    request["ExpressionAttributeNames"]["#lease"] = LEASE_ATTRIBUTE
    with _unless_claimed_elsewhere():
        aws.dynamodb().update_item(**request, UpdateExpression="REMOVE #lease")


def release_message_id(message: VerifiedWebhook, claim: str) -> None:
    """Forget a webhook id whose processing failed, so the sender's retry is not
    taken for a replay. Only `claim` is removed, never one another delivery of the
    same id made meanwhile. One short attempt (CLEANUP): it follows a failure that
    may itself have waited out a stalled call, and an id not released is freed when
    its lease ends."""
    with _unless_claimed_elsewhere():
        aws.dynamodb_cleanup().delete_item(**_own_claim(message, claim))


def _own_claim(message: VerifiedWebhook, claim: str) -> dict[str, Any]:
    """A request on the id's record that applies only while `claim` holds it."""
    return {
        "TableName": get_settings().webhook_nonce_table,
        "Key": {
            names.WEBHOOK_NONCE_PARTITION_KEY: {"S": f"{WEBHOOK_ID_SPACE}#{message.message_id}"}
        },
        "ConditionExpression": "#claim = :claim",
        "ExpressionAttributeNames": {"#claim": CLAIM_ATTRIBUTE},
        "ExpressionAttributeValues": {":claim": {"S": claim}},
    }


@contextmanager
def _unless_claimed_elsewhere() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        # Gone already, or another delivery's claim: either way not ours to change.
        if aws.error_code(exc) != "ConditionalCheckFailedException":
            raise
