"""Which version of the webhook secret signs the feed's deliveries.

The feed learns a new webhook secret from on-call, not from the rotation: until it
is told, it signs with AWSPREVIOUS, the value the next rotation would stop
accepting. The API records, per version, when it last verified an accepted
delivery, and which version signed the last one (`record_secret_use`, items in the
webhook-nonce table); a routine rotation (functions/rotate_iam/generated.py) reads
the order of the two live versions' last uses, the daily secret-age check and
`babyshield secrets` also whether the last one was signed with a version no longer
live (`signer_state`): after an emergency rotation the feed's every delivery is
refused until it is given the new secret, and nothing else tells.

`babyshield webhook send` is not the feed: its deliveries (ids in
CLI_MESSAGE_ID_PREFIX's space) are not recorded.

Kept apart from webhooks.py, which imports the secret's version cache, so a
function that only reads these records (secret_age) cannot reach a secret value.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from functions.shared import names
from functions.shared.identity import aws
from functions.shared.observability import logger
from functions.shared.settings import get_settings

if TYPE_CHECKING:
    from functions.shared.identity.webhooks import VerifiedWebhook

# `babyshield webhook send` puts its deliveries' ids in this space, which the signature
# covers: on-call trying the endpoint with AWSCURRENT is not the feed switching to it.
CLI_MESSAGE_ID_PREFIX = "babyshield-cli_"

# When a version of the webhook secret last signed an accepted delivery: Unix seconds,
# and milliseconds, which order two deliveries of one second (items written before
# the milliseconds were kept have the seconds only).
SIGNER_SPACE = "webhook-signer"
LAST_SIGNED_ATTRIBUTE = "last_signed"
LAST_SIGNED_MS_ATTRIBUTE = "last_signed_ms"
# Which version signed the last accepted delivery of all, whichever it was, and when
# (the attributes above): the one record that still names a version an emergency
# rotation retired.
LAST_SIGNER_KEY = f"{SIGNER_SPACE}-last"
VERSION_ATTRIBUTE = "version_id"
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
    if version is None or message.message_id.startswith(CLI_MESSAGE_ID_PREFIX):
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
    recorded = _record_later_use(f"{SIGNER_SPACE}#{version}", version, moment_ms)
    # A previous-version use at the same millisecond as a current one wins, as the
    # per-version order counts two uses at one moment as still on AWSPREVIOUS.
    recorded &= _record_later_use(
        LAST_SIGNER_KEY,
        version,
        moment_ms,
        version_attribute=True,
        ties_win=message.signed_with_previous,
    )
    if recorded:
        _use_written.clear()
        _use_written[version] = time.monotonic()


def _record_later_use(
    key: str,
    version: str,
    moment_ms: int,
    *,
    version_attribute: bool = False,
    ties_win: bool = False,
) -> bool:
    """Set the item's use time to `moment_ms` unless it holds a later one (or, without
    `ties_win`, the same); with `version_attribute`, name `version` with it. False if
    the write failed (logged); a later use found is no failure."""
    moment = moment_ms // 1000
    assignments = "#last = :now, #last_ms = :now_ms, #ttl = :ttl"
    names_used = {
        "#last": LAST_SIGNED_ATTRIBUTE,
        "#last_ms": LAST_SIGNED_MS_ATTRIBUTE,
        "#ttl": names.TTL_ATTRIBUTE,
    }
    values: dict[str, dict[str, str]] = {
        ":now": {"N": str(moment)},
        ":now_ms": {"N": str(moment_ms)},
        ":ttl": {"N": str(moment + SECRET_USE_RETENTION_SECONDS)},
    }
    if version_attribute:
        assignments += ", #version = :version"
        names_used["#version"] = VERSION_ATTRIBUTE
        values[":version"] = {"S": version}
    try:
        aws.dynamodb().update_item(
            TableName=get_settings().webhook_nonce_table,
            Key={names.WEBHOOK_NONCE_PARTITION_KEY: {"S": key}},
            UpdateExpression=f"SET {assignments}",
            ConditionExpression=(
                f"attribute_not_exists(#last_ms) OR #last_ms {'<=' if ties_win else '<'} :now_ms"
            ),
            ExpressionAttributeNames=names_used,
            ExpressionAttributeValues=values,
        )
    except Exception as exc:  # noqa: BLE001 - see record_secret_use
        if aws.error_code(exc) != "ConditionalCheckFailedException":
            logger.warning(
                "webhook secret use not recorded",
                extra={"version_id": version, "record": key, "error": type(exc).__name__},
            )
            return False
    return True


def _use_item(key: str) -> dict[str, Any] | None:
    """The use record at `key`, or None if there is none in the retention period."""
    answer = aws.dynamodb().get_item(
        TableName=get_settings().webhook_nonce_table,
        Key={names.WEBHOOK_NONCE_PARTITION_KEY: {"S": key}},
        ConsistentRead=True,
    )
    item: dict[str, Any] = answer.get("Item", {})
    expires = item.get(names.TTL_ATTRIBUTE, {}).get("N")
    if LAST_SIGNED_ATTRIBUTE not in item or (expires is not None and int(expires) < time.time()):
        return None  # none, or expired and not yet swept by DynamoDB's TTL
    return item


def _signed_at(item: dict[str, Any]) -> float:
    milliseconds = item.get(LAST_SIGNED_MS_ATTRIBUTE, {}).get("N")
    if milliseconds is not None:
        return int(milliseconds) / 1000
    return float(item[LAST_SIGNED_ATTRIBUTE]["N"])


def last_accepted_signature(version_id: str) -> float | None:
    """When a version of the webhook secret last signed an accepted delivery (Unix
    seconds, to the millisecond), or None if it has signed none in the retention
    period."""
    item = _use_item(f"{SIGNER_SPACE}#{version_id}")
    return None if item is None else _signed_at(item)


def last_accepted_signer() -> tuple[str, float] | None:
    """The version of the webhook secret that signed the last accepted delivery, and
    when, or None if none is recorded in the retention period (or only before this
    record was kept)."""
    item = _use_item(LAST_SIGNER_KEY)
    version = None if item is None else item.get(VERSION_ATTRIBUTE, {}).get("S")
    if item is None or not isinstance(version, str):
        return None
    return version, _signed_at(item)


@dataclass(frozen=True)
class SignerState:
    """When each live version of the webhook secret last signed an accepted delivery,
    and which version, live or not, signed the last one."""

    current_version: str | None
    previous_version: str | None
    current_signed_at: float | None
    previous_signed_at: float | None
    last_version: str | None = None
    last_signed_at: float | None = None

    @property
    def sender_on_previous(self) -> bool:
        """The sender's last accepted delivery was signed with AWSPREVIOUS, none since
        with AWSCURRENT: the next rotation would refuse what it sends. Both at one
        moment counts as still on AWSPREVIOUS, as a sender part-way through its
        switch is."""
        if self.previous_signed_at is None:
            return False
        return self.current_signed_at is None or self.current_signed_at <= self.previous_signed_at

    @property
    def sender_on_retired(self) -> bool:
        """The last accepted delivery was signed with a version that is neither
        AWSCURRENT nor AWSPREVIOUS any more (an emergency rotation retired it at once):
        every delivery the sender signs with it is refused."""
        return self.last_version is not None and self.last_version not in (
            self.current_version,
            self.previous_version,
        )

    @property
    def sender_on_old_secret(self) -> bool:
        """The last accepted delivery was not signed with AWSCURRENT: AWSPREVIOUS (the
        next routine rotation would refuse the sender) or a retired version (it is
        refused now). What the daily check alarms on and `babyshield secrets` notes."""
        if self.last_version is not None and self.last_version != self.current_version:
            return True
        return self.sender_on_previous


def signer_state(current_version: str | None, previous_version: str | None) -> SignerState:
    last = last_accepted_signer()
    return SignerState(
        current_version,
        previous_version,
        None if current_version is None else last_accepted_signature(current_version),
        None if previous_version is None else last_accepted_signature(previous_version),
        None if last is None else last[0],
        None if last is None else last[1],
    )
