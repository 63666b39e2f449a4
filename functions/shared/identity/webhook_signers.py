"""Which version of the webhook secret signs the feed's deliveries.

The feed learns a new webhook secret from on-call, not from the rotation: until it
is told, it signs with AWSPREVIOUS, the value the next rotation would stop
accepting. The API records, per version, when it last verified an accepted
delivery (`record_secret_use`, an item in the webhook-nonce table); a routine
rotation (functions/rotate_iam/generated.py), the daily secret-age check and
`babyshield secrets` read the order of the two versions' last uses
(`signer_state`).

Kept apart from webhooks.py, which imports the secret's version cache, so a
function that only reads these records (secret_age) cannot reach a secret value.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from functions.shared import names
from functions.shared.identity import aws
from functions.shared.observability import logger
from functions.shared.settings import get_settings

if TYPE_CHECKING:
    from functions.shared.identity.webhooks import VerifiedWebhook

# When a version of the webhook secret last signed an accepted delivery: Unix seconds,
# and milliseconds, which order two deliveries of one second (items written before
# the milliseconds were kept have the seconds only).
SIGNER_SPACE = "webhook-signer"
LAST_SIGNED_ATTRIBUTE = "last_signed"
LAST_SIGNED_MS_ATTRIBUTE = "last_signed_ms"
# Kept across several 90-day rotations: a sender that delivers rarely is still known.
SECRET_USE_RETENTION_SECONDS = 400 * 86_400
# A warm instance writes the current version's use at most this often while it keeps
# signing: the rotation guard needs the order of the two versions' last uses, not
# every delivery. A delivery signed with the previous version is always written: this
# instance cannot know that another one wrote the current version since, and a
# skipped write could make a feed still on the old secret look switched.
SECRET_USE_WRITE_INTERVAL_SECONDS = 60

# The version whose use this instance wrote last (one entry at most), and when
# (time.monotonic()).
_use_written: dict[str, float] = {}


def record_secret_use(message: VerifiedWebhook, *, now: float | None = None) -> None:
    """Note that `message`'s secret version signed an accepted delivery.

    Bookkeeping for the rotation guard, never a reason to fail a delivery: an
    error is logged and the delivery stands. The stored time only moves forward,
    so instances writing out of order cannot make a version look older than it is.
    """
    version = message.secret_version
    if version is None:
        return
    # Skipped only while the current version signs again: a switch to the other one
    # is always written, or the stored order could say the opposite of what happened.
    written = _use_written.get(version)
    if (
        not message.signed_with_previous
        and written is not None
        and time.monotonic() - written < SECRET_USE_WRITE_INTERVAL_SECONDS
    ):
        return
    moment_ms = int((time.time() if now is None else now) * 1000)
    moment = moment_ms // 1000
    try:
        aws.dynamodb().update_item(
            TableName=get_settings().webhook_nonce_table,
            Key={names.WEBHOOK_NONCE_PARTITION_KEY: {"S": f"{SIGNER_SPACE}#{version}"}},
            UpdateExpression="SET #last = :now, #last_ms = :now_ms, #ttl = :ttl",
            ConditionExpression="attribute_not_exists(#last_ms) OR #last_ms < :now_ms",
            ExpressionAttributeNames={
                "#last": LAST_SIGNED_ATTRIBUTE,
                "#last_ms": LAST_SIGNED_MS_ATTRIBUTE,
                "#ttl": names.TTL_ATTRIBUTE,
            },
            ExpressionAttributeValues={
                ":now": {"N": str(moment)},
                ":now_ms": {"N": str(moment_ms)},
                ":ttl": {"N": str(moment + SECRET_USE_RETENTION_SECONDS)},
            },
        )
    except Exception as exc:  # noqa: BLE001 - see the docstring
        if aws.error_code(exc) != "ConditionalCheckFailedException":
            logger.warning(
                "webhook secret use not recorded",
                extra={"version_id": version, "error": type(exc).__name__},
            )
            return
    _use_written.clear()
    _use_written[version] = time.monotonic()


def last_accepted_signature(version_id: str) -> float | None:
    """When a version of the webhook secret last signed an accepted delivery (Unix
    seconds, to the millisecond), or None if it has signed none in the retention
    period."""
    answer = aws.dynamodb().get_item(
        TableName=get_settings().webhook_nonce_table,
        Key={names.WEBHOOK_NONCE_PARTITION_KEY: {"S": f"{SIGNER_SPACE}#{version_id}"}},
        ConsistentRead=True,
    )
    item = answer.get("Item", {})
    seconds = item.get(LAST_SIGNED_ATTRIBUTE, {}).get("N")
    milliseconds = item.get(LAST_SIGNED_MS_ATTRIBUTE, {}).get("N")
    expires = item.get(names.TTL_ATTRIBUTE, {}).get("N")
    if seconds is None or (expires is not None and int(expires) < time.time()):
        return None  # none, or expired and not yet swept by DynamoDB's TTL
    return int(milliseconds) / 1000 if milliseconds is not None else float(seconds)


@dataclass(frozen=True)
class SignerState:
    """When each live version of the webhook secret last signed an accepted delivery."""

    current_version: str | None
    previous_version: str | None
    current_signed_at: float | None
    previous_signed_at: float | None

    @property
    def sender_on_previous(self) -> bool:
        """The sender's last accepted delivery was signed with AWSPREVIOUS, none since
        with AWSCURRENT: the next rotation would refuse what it sends. Both at one
        moment counts as still on AWSPREVIOUS, as a sender part-way through its
        switch is."""
        if self.previous_signed_at is None:
            return False
        return self.current_signed_at is None or self.current_signed_at <= self.previous_signed_at


def signer_state(current_version: str | None, previous_version: str | None) -> SignerState:
    return SignerState(
        current_version,
        previous_version,
        None if current_version is None else last_accepted_signature(current_version),
        None if previous_version is None else last_accepted_signature(previous_version),
    )
