"""Recall changes pushed by the upstream feed (a Standard Webhooks delivery).

The signature was checked on the raw body before anything parsed it (the
authentication edge, functions/api/middleware/authentication.py); here the
event's `webhook-id` is claimed (a replay is refused) and the recall is upserted
by `source_id`, unless the stored version is newer than the event (deliveries
arrive out of order: a retried old event must not undo a later one). If the
upsert fails the id is released, so the sender's retry is not taken for a replay
and nothing is left half-done; so is a claim whose every attempt lost its answer
(DynamoDB may have applied it). The claim is a lease until the recall is stored:
if the function is killed in between, the sender's retry after the lease is
taken as the delivery, not refused as a replay until the claim expires.

The claim holds a digest of the event: an id names one event. Another event under
a held id (the feed reusing ids, or someone holding its secret) is refused with its
own 409 and pages, as any refused feed delivery does: its recall is not stored, and
no first delivery stored it either.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, ConfigDict, Field, StringConstraints

from functions.api.identity.audit import audit
from functions.api.models import ApiModel, Composed, IsoDate, IsoTimestamp, Printable
from functions.api.recalls import queries
from functions.shared import names
from functions.shared.errors import (
    Conflict,
    DomainError,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
)
from functions.shared.observability import logger, metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

    from functions.shared.identity.webhooks import VerifiedWebhook

SourceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")]
Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    Printable,
    Composed,
]
LongText = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=5000), Printable, Composed
]
Country = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=2, max_length=64),
    Printable,
    Composed,
]
# A bounded repetition in the pattern would compile to a huge automaton; the length
# limit is a separate, cheap constraint. No whitespace or control character: no URL
# holds one.
HttpsUrl = Annotated[
    str, StringConstraints(max_length=2048, pattern=r"^https://[^\s\x00-\x1f\x7f-\x9f]+$")
]

# Older than any recall register; a year like 0202 is a typo.
EARLIEST_RECALL_DATE = date(1900, 1, 1)
EARLIEST_EVENT_TIME = datetime(1900, 1, 1, tzinfo=UTC)


def _announced(value: date) -> date:
    """A recall date is when the recall was announced, so never in the future.

    Searches list the newest first: a recall dated 2999 would head every result
    until someone deleted it. Tomorrow in UTC is allowed: a feed a few hours
    ahead of UTC sends its own today.
    """
    latest = datetime.now(UTC).date() + timedelta(days=1)
    if not EARLIEST_RECALL_DATE <= value <= latest:
        raise ValueError("recall_date is out of range")
    return value


def _occurred(value: datetime) -> datetime:
    """An event's time orders the versions of a recall, so it may not be in the future.

    One later than the clock (beyond the signature's skew) would be stored as the
    newest version and make every real update after it look stale.
    """
    from functions.shared.settings import get_settings

    skew = timedelta(seconds=get_settings().webhook_tolerance_seconds)
    if not EARLIEST_EVENT_TIME <= value <= datetime.now(UTC) + skew:
        raise ValueError("timestamp is out of range")
    return value


EventTime = Annotated[AwareDatetime, IsoTimestamp, AfterValidator(_occurred)]


RecallDate = Annotated[
    IsoDate,
    AfterValidator(_announced),
    Field(description="The announcement date: from 1900-01-01 to tomorrow (UTC)."),
]


class RecallData(ApiModel):
    model_config = ConfigDict(extra="forbid")

    source_id: SourceId
    product: Text
    brand: Text
    hazard: Text
    remedy: Text
    recall_date: RecallDate
    description: LongText | None = None
    country: Country | None = None
    url: HttpsUrl | None = None


class RecallEvent(ApiModel):
    """A Standard Webhooks event: `type`, `timestamp` and the recall as `data`."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["recall.created", "recall.updated"]
    # With its offset: a time without one means nothing certain to the receiver.
    timestamp: EventTime
    data: RecallData


class WebhookAccepted(ApiModel):
    status: Literal["accepted"] = "accepted"
    source_id: str
    recall_id: int
    created: bool


def accept_recall(
    message: VerifiedWebhook | None, event: RecallEvent, source_ip: str
) -> WebhookAccepted:
    """Claim the delivery's id, upsert its recall; `message` is the verified signature."""
    from functions.shared.db import write_session
    from functions.shared.identity.webhook_signers import record_secret_use
    from functions.shared.identity.webhooks import (
        WEBHOOK_LEASE_SECONDS,
        WebhookIdReused,
        WebhookInProgress,
        WebhookReplayed,
        claim_message_id,
        new_claim_token,
        settle_message_id,
    )

    if message is None:
        raise Unauthorized()
    claim = new_claim_token()
    try:
        claim_message_id(
            message,
            lease_seconds=WEBHOOK_LEASE_SECONDS,
            claim=claim,
            content=event_digest(event),
        )
    except WebhookIdReused as exc:
        _report_reused_id(message, source_ip)
        raise Conflict(
            "This webhook-id was already received with a different event; this delivery "
            "was not stored. Send each event under its own webhook-id."
        ) from exc
    except WebhookReplayed as exc:
        in_progress = isinstance(exc, WebhookInProgress)
        audit(
            "webhook",
            "failure",
            reason="in_progress" if in_progress else "replayed",
            source_ip=source_ip,
            message_id=message.message_id,
        )
        if in_progress:
            raise Conflict(
                "This webhook is being received; if that delivery fails, "
                f"retry after {WEBHOOK_LEASE_SECONDS} seconds."
            ) from exc
        raise Conflict("This webhook was already received.") from exc
    except Exception as exc:
        logger.exception("webhook id store unavailable")
        # Every attempt may have been applied with its answer lost: a claim left behind
        # would answer the sender's retry "being received" for a whole lease, though
        # this delivery answers 503 and stores nothing.
        _release_claim(message, claim)
        raise ServiceUnavailable() from exc
    try:
        with write_session(user_id=None) as conn:
            recall_id, created, applied = queries.upsert_recall(
                conn, event.data.model_dump(), event.timestamp
            )
    except BaseException:
        _release_claim(message, claim)
        raise
    try:
        settle_message_id(message, claim)
    except Exception:  # noqa: BLE001 - the recall is stored; the lease only lapses
        # A retry after the lease applies the same version again, which changes nothing.
        logger.exception("webhook id not settled", extra={"message_id": message.message_id})
    # Which secret the sender signs with, for the rotation that would retire it.
    record_secret_use(message)
    audit(
        "webhook",
        "success",
        source_ip=source_ip,
        message_id=message.message_id,
        event_type=event.type,
        source_id=event.data.source_id,
        applied=applied,
        secret_version=message.secret_version,
    )
    return WebhookAccepted(source_id=event.data.source_id, recall_id=recall_id, created=created)


def event_digest(event: RecallEvent) -> str:
    """What identifies an event for its webhook-id: the SHA-256 of the event as parsed,
    so a retry laid out differently (whitespace, key order) is the same event."""
    canonical = event.model_dump_json(by_alias=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _report_reused_id(message: VerifiedWebhook, source_ip: str) -> None:
    """An id held for another event: the event is refused, so unless on-call sent it
    (`babyshield webhook send`, whose ids the signature puts in its own space) it is a
    recall the feed has not got stored, and pages as a refused delivery does. Only the
    id is logged: the event's text is the feed's, and its digest tells no one more."""
    from functions.shared.identity.webhook_signers import CLI_MESSAGE_ID_PREFIX

    audit(
        "webhook",
        "failure",
        reason="id_reused",
        source_ip=source_ip,
        message_id=message.message_id,
    )
    if message.message_id.startswith(CLI_MESSAGE_ID_PREFIX):
        return
    _page_refused_delivery(message, Conflict(), reason="webhook_id_reused")


def _release_claim(message: VerifiedWebhook, claim: str) -> None:
    """Free the delivery's id for the sender's retry after a failure; only this claim
    is removed, if it was written at all. A release that fails leaves the lease, which
    frees the id when it ends."""
    from functions.shared.identity.webhooks import release_message_id

    try:
        release_message_id(message, claim)
    except Exception:  # noqa: BLE001 - the original error is the one to report
        logger.exception("webhook id not released", extra={"message_id": message.message_id})


def record_refused_delivery(message: VerifiedWebhook, refusal: DomainError) -> None:
    """Tell on-call when the API refused a delivery whose signature verified.

    The recall feed signs what it sends, so such a refusal is a recall not stored,
    not an attacker, and each retry of the feed meets the same refusal: an error
    line and a metric whose alarm pages (RUNBOOK, "A signed feed delivery was
    refused"). That holds for every refusal of the delivery's content (attack
    inspection, a body that is not JSON, a field the event model does not take),
    not for a replay (409): its recall was stored by the first delivery (another
    event under a received id pages where it is refused, `_report_reused_id`). Nor for a
    replay refused before the replay check (the request limits: another media
    type, a padded header; headers are not signed): its id is held already.
    """
    if not 400 <= refusal.status < 500 or isinstance(refusal, Conflict):
        return
    if _received_already(message):
        logger.info(
            "a refused webhook delivery replays one received: not counted",
            extra={"webhook_id": message.message_id, "status": refusal.status},
        )
        return
    _page_refused_delivery(message, refusal)


def _page_refused_delivery(
    message: VerifiedWebhook, refusal: DomainError, *, reason: str | None = None
) -> None:
    """The error line and the metric whose alarm pages on-call for a signed delivery
    refused (RUNBOOK, "A signed feed delivery was refused")."""
    from aws_lambda_powertools.metrics import MetricUnit

    line: dict[str, object] = {
        "audit": True,
        "event": "feed_delivery_refused",
        "webhook_id": message.message_id,
        "status": refusal.status,
        "code": refusal.code,
        # Where validation failed and how, in the API's own words: never a value.
        "problems": refusal.problems if isinstance(refusal, ValidationFailed) else [],
    }
    if reason is not None:
        line["reason"] = reason
    logger.error("a signed feed delivery was refused", extra=line)
    metrics.add_metric(name=names.METRIC_FEED_DELIVERIES_REFUSED, unit=MetricUnit.Count, value=1)


def _received_already(message: VerifiedWebhook) -> bool:
    """Whether another delivery of the id stored its recall or is storing it. A replay
    store that cannot be asked answers no: a page for a replay costs on-call a look,
    a missing one a recall."""
    from functions.shared.identity.webhooks import message_id_taken

    try:
        return message_id_taken(message)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        logger.warning(
            "webhook id store unavailable: a refused delivery is counted as the feed's",
            extra={"message_id": message.message_id, "error": type(exc).__name__},
        )
        return False


def record_refused_if_signed(event: APIGatewayProxyEvent, refusal: DomainError) -> None:
    """A delivery refused before identity ran (its size, media type or encoding) is
    the feed's, and so a page, only if its signature verifies; an unsigned one stays
    a plain refusal."""
    from functions.api.middleware.authentication import source_ip_of, verify_webhook_request

    try:
        message = verify_webhook_request(event, source_ip_of(event))
    except DomainError:
        return  # not signed by the feed (audited as such), or its body unreadable
    record_refused_delivery(message, refusal)
