"""Failed sign-in backoff per account and per source IP, stored in DynamoDB.

State lives in DynamoDB so it holds across Lambda instances: an attacker
spreading guesses over many concurrent invocations meets the same counters.
Accounts are keyed by a hash of the normalised email, whether or not the account
exists, so a lockout says nothing about which emails are registered and no email
is stored. Source addresses are keyed per IPv4 address and per IPv6 /64, the
block one subscriber is usually given (so rotating addresses inside it does not
reset the count).

A password is checked only after a slot for it has been reserved, for the account
and for the source: a conditional UpdateItem adds 1 to the key's count only while
the key is not locked and its count is below the threshold. DynamoDB applies each
conditional write atomically, so however many requests arrive together, at most
`threshold` of them are checked per key; the others are refused unchecked. A
reservation that meets a wrong password stays as the failure; the one that
reaches the threshold also locks the key for base * 2**(failures - threshold)
seconds, capped. Once a lock has passed, one more reservation is allowed
(`failures = lock_at`, the count the lock was set at), so past the threshold
guesses go one at a time, each lock longer than the last. A correct password
deletes the account's record and hands back the source's slot (a source counts
failures only); a check that never happened (the database was down) hands back
both. Each reservation moves the window: the record lives until `window` after its
last reservation, and a lock keeps it until `window` after the lock ends, so the
attempt after a lock still meets the count (and the longer lock) it earned.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from functions.shared import names
from functions.shared.identity import aws
from functions.shared.settings import get_settings

# What a refused caller is told while the slot at the threshold is taken by a check
# still in flight: it ends in a lock or, for a correct password, a clear record.
PENDING_RETRY_SECONDS = 1
# A window reset that loses to a concurrent one retries the reservation; a few
# rounds settle it, since after a reset the record is live again.
RESERVE_ATTEMPTS = 3
# How long the check that took the slot at the threshold may still be running (a
# password hash and two writes take well under a second). Past it, a record at the
# threshold with no lock is a check whose lock write failed: the lock it should
# have set is set then, from its reservation, instead of refusing until the window
# ends.
CHECK_IN_FLIGHT_SECONDS = 10
# Each request's random mark on what it changed. botocore retries a call whose
# answer was lost, and ADD is not idempotent: a retry that finds its own mark knows
# its change was applied already, and counts it once.
RESERVED_BY = "reserved_by"
RELEASED_BY = "released_by"

_CONDITION_FAILED = "ConditionalCheckFailedException"


class LockoutUnavailable(Exception):
    """DynamoDB could not be asked; sign-in fails closed."""


class LockedOut(Exception):
    """No attempt may be made for these keys now. `by_source`: the source address's own
    failures locked it, not the account's (which anyone's guesses may have locked)."""

    def __init__(self, retry_after_seconds: int, *, by_source: bool = False):
        super().__init__(f"locked for {retry_after_seconds}s")
        self.retry_after_seconds = max(1, retry_after_seconds)
        self.by_source = by_source


@dataclass(frozen=True)
class LockoutKeys:
    account: str
    source_ip: str


@dataclass(frozen=True)
class Reservation:
    """Slots taken for one password check: each key's count including this attempt."""

    keys: LockoutKeys
    account_attempts: int
    ip_attempts: int


@dataclass(frozen=True)
class FailureOutcome:
    account_failures: int
    ip_failures: int
    # Seconds of lockout this failure started (0 if none), for the lockout metric.
    locked_for_seconds: int


def lockout_keys(email: str, source_ip: str) -> LockoutKeys:
    digest = hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()
    return LockoutKeys(f"signin#account#{digest}", f"signin#ip#{source_key(source_ip)}")


def source_key(source_ip: str) -> str:
    """The address a source is counted under: an IPv4 address (an IPv4-mapped IPv6
    address is the IPv4 one), or the /64 an IPv6 address is in. Text that is no
    address is kept as it is, so it still has one counter."""
    try:
        address = ipaddress.ip_address(source_ip)
    except ValueError:
        return source_ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)


class SignInLockout:
    def __init__(self, *, table_name: str | None = None, clock: Callable[[], float] = time.time):
        self._table_name = table_name
        self._clock = clock

    @property
    def _table(self) -> str:
        return self._table_name or get_settings().rate_limit_table

    def retry_after(self, keys: LockoutKeys) -> int:
        """Seconds until sign-in may be tried again for these keys; 0 if not locked.

        One read, so a locked key is refused without a write; `reserve` is what
        holds when requests race."""
        return max(self.waits(keys))

    def waits(self, keys: LockoutKeys) -> tuple[int, int]:
        """Seconds until the account and until the source may try again (0: not locked)."""
        now = self._clock()
        pk = names.RATE_LIMIT_PARTITION_KEY
        try:
            response = aws.dynamodb().batch_get_item(
                RequestItems={
                    self._table: {
                        "Keys": [{pk: {"S": keys.account}}, {pk: {"S": keys.source_ip}}],
                        "ConsistentRead": True,
                        "ProjectionExpression": "#pk, locked_until",
                        "ExpressionAttributeNames": {"#pk": pk},
                    }
                }
            )
        except Exception as exc:
            raise LockoutUnavailable(_reason(exc)) from exc
        if response.get("UnprocessedKeys"):
            raise LockoutUnavailable("unprocessed keys")
        wait = {keys.account: 0, keys.source_ip: 0}
        for item in response.get("Responses", {}).get(self._table, []):
            key = item.get(pk, {}).get("S")
            locked_until = int(item.get("locked_until", {}).get("N", "0"))
            if key in wait:
                wait[key] = max(0, int(locked_until - now + 0.999))
        return wait[keys.account], wait[keys.source_ip]

    def reserve(self, keys: LockoutKeys) -> Reservation:
        """Take one attempt for the account and for the source, or raise LockedOut.

        Taken together or not at all: if the source is refused, the account's slot
        is handed back."""
        settings = get_settings()
        account = self._reserve(keys.account, settings.login_account_failure_threshold)
        try:
            ip = self._reserve(keys.source_ip, settings.login_ip_failure_threshold)
        except LockedOut as locked:
            self._release_quietly(keys.account)
            raise LockedOut(locked.retry_after_seconds, by_source=True) from None
        except Exception:
            self._release_quietly(keys.account)
            raise
        return Reservation(keys, account, ip)

    def record_failure(self, reservation: Reservation) -> FailureOutcome:
        """The reserved check found a wrong password: the slots stay as failures, and
        a key whose count has reached its threshold is locked."""
        settings = get_settings()
        account = self._lock_if_due(
            reservation.keys.account,
            reservation.account_attempts,
            settings.login_account_failure_threshold,
        )
        ip = self._lock_if_due(
            reservation.keys.source_ip,
            reservation.ip_attempts,
            settings.login_ip_failure_threshold,
        )
        return FailureOutcome(
            reservation.account_attempts, reservation.ip_attempts, max(account, ip)
        )

    def record_success(self, reservation: Reservation) -> None:
        """A correct password clears the account's count (not the IP's: one good
        account must not reset an IP that is guessing at others, but the IP's slot
        for this attempt is handed back, since it was no failure)."""
        try:
            aws.dynamodb().delete_item(
                TableName=self._table,
                Key={names.RATE_LIMIT_PARTITION_KEY: {"S": reservation.keys.account}},
            )
        except Exception as exc:
            raise LockoutUnavailable(_reason(exc)) from exc
        self._release(reservation.keys.source_ip)

    def release(self, reservation: Reservation) -> None:
        """The reserved check never happened: hand both slots back."""
        self._release(reservation.keys.account)
        self._release(reservation.keys.source_ip)

    def _reserve(self, key: str, threshold: int) -> int:
        """One more attempt on `key`; returns its count with this one, or raises LockedOut."""
        settings = get_settings()
        client = aws.dynamodb()
        pk = names.RATE_LIMIT_PARTITION_KEY
        for _ in range(RESERVE_ATTEMPTS):
            now = int(self._clock())
            window_end = now + settings.login_failure_window_seconds
            mark = secrets.token_hex(8)
            try:
                response = client.update_item(
                    TableName=self._table,
                    Key={pk: {"S": key}},
                    UpdateExpression="ADD failures :one SET #ttl = :ttl, #mark = :mark",
                    # A record past its window counts as gone (even before the TTL sweep)
                    # and is started over below. A live one takes an attempt if it is
                    # not locked and is below the threshold, or if its last lock has
                    # passed and nobody has taken the one attempt that follows it.
                    ConditionExpression=(
                        "(attribute_not_exists(#pk) OR (#ttl > :now"
                        " AND (attribute_not_exists(locked_until) OR locked_until <= :now)"
                        " AND (failures < :threshold OR failures = lock_at)))"
                        " AND (attribute_not_exists(#mark) OR #mark <> :mark)"
                    ),
                    ExpressionAttributeNames={
                        "#ttl": names.TTL_ATTRIBUTE,
                        "#pk": pk,
                        "#mark": RESERVED_BY,
                    },
                    ExpressionAttributeValues={
                        ":one": {"N": "1"},
                        ":ttl": {"N": str(window_end)},
                        ":now": {"N": str(now)},
                        ":threshold": {"N": str(threshold)},
                        ":mark": {"S": mark},
                    },
                    ReturnValues="UPDATED_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return int(response["Attributes"]["failures"]["N"])
            except Exception as exc:
                if aws.error_code(exc) != _CONDITION_FAILED:
                    raise LockoutUnavailable(_reason(exc)) from exc
                current = aws.condition_item(exc)
            if _marked(current, RESERVED_BY, mark):
                return _number(current, "failures")
            if _number(current, names.TTL_ATTRIBUTE) > now:
                locked_until = _number(current, "locked_until")
                if locked_until > now:
                    raise LockedOut(locked_until - now)
                reserved_at = _number(current, names.TTL_ATTRIBUTE) - (
                    settings.login_failure_window_seconds
                )
                if now - reserved_at < CHECK_IN_FLIGHT_SECONDS:
                    raise LockedOut(PENDING_RETRY_SECONDS)
                # The lock that check should have set, as of its reservation; then
                # reserve again: refused until it ends, or the attempt after it.
                self._lock_if_due(key, _number(current, "failures"), threshold, since=reserved_at)
                continue
            if self._start_over(key, now, window_end):
                return 1
        raise LockedOut(PENDING_RETRY_SECONDS)

    def _start_over(self, key: str, now: int, window_end: int) -> bool:
        """Replace a record past its window with this attempt; False if another
        request replaced it first (the caller then reserves on the new one)."""
        pk = names.RATE_LIMIT_PARTITION_KEY
        mark = secrets.token_hex(8)
        try:
            aws.dynamodb().put_item(
                TableName=self._table,
                Item={
                    pk: {"S": key},
                    "failures": {"N": "1"},
                    names.TTL_ATTRIBUTE: {"N": str(window_end)},
                    RESERVED_BY: {"S": mark},
                },
                ConditionExpression="attribute_not_exists(#pk) OR #ttl <= :now",
                ExpressionAttributeNames={"#ttl": names.TTL_ATTRIBUTE, "#pk": pk},
                ExpressionAttributeValues={":now": {"N": str(now)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except Exception as exc:
            if aws.error_code(exc) == _CONDITION_FAILED:
                # The retry of a put whose answer was lost meets the record it wrote.
                return _marked(aws.condition_item(exc), RESERVED_BY, mark)
            raise LockoutUnavailable(_reason(exc)) from exc
        return True

    def _lock_if_due(
        self, key: str, failures: int, threshold: int, *, since: int | None = None
    ) -> int:
        """Lock `key` if this failure brought it to its threshold or past it; returns
        the seconds of the lock started (0 if none). `since`: when the lock starts
        (default now)."""
        if failures < threshold:
            return 0
        settings = get_settings()
        now = int(self._clock()) if since is None else since
        lock_seconds: int = min(
            settings.login_lockout_max_seconds,
            settings.login_lockout_base_seconds * 2 ** min(failures - threshold, 20),
        )
        locked_until = now + lock_seconds
        # Remembered for a whole window past the lock: a record that ended with its
        # lock (a capped lock as long as the window) would let the next guess start
        # over with a fresh `threshold` of checks instead of the one it has earned.
        record_end = locked_until + settings.login_failure_window_seconds
        try:
            aws.dynamodb().update_item(
                TableName=self._table,
                Key={names.RATE_LIMIT_PARTITION_KEY: {"S": key}},
                # lock_at = the count now: once the lock passes, exactly one more
                # attempt matches `failures = lock_at` in the reservation.
                UpdateExpression="SET locked_until = :until, lock_at = failures, #ttl = :ttl",
                # Not on a record a correct password has cleared meanwhile, nor on one
                # that handed slots back below the threshold.
                ConditionExpression="failures >= :threshold",
                ExpressionAttributeNames={"#ttl": names.TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":until": {"N": str(locked_until)},
                    ":ttl": {"N": str(record_end)},
                    ":threshold": {"N": str(threshold)},
                },
            )
        except Exception as exc:
            if aws.error_code(exc) == _CONDITION_FAILED:
                return 0
            raise LockoutUnavailable(_reason(exc)) from exc
        return lock_seconds

    def _release(self, key: str) -> None:
        mark = secrets.token_hex(8)
        try:
            aws.dynamodb().update_item(
                TableName=self._table,
                Key={names.RATE_LIMIT_PARTITION_KEY: {"S": key}},
                UpdateExpression="ADD failures :minus_one SET #mark = :mark",
                # Never below zero, nor creating a record a success has deleted, nor
                # twice for one release whose answer was lost.
                ConditionExpression=(
                    "failures >= :one AND (attribute_not_exists(#mark) OR #mark <> :mark)"
                ),
                ExpressionAttributeNames={"#mark": RELEASED_BY},
                ExpressionAttributeValues={
                    ":minus_one": {"N": "-1"},
                    ":one": {"N": "1"},
                    ":mark": {"S": mark},
                },
            )
        except Exception as exc:
            if aws.error_code(exc) == _CONDITION_FAILED:
                return
            raise LockoutUnavailable(_reason(exc)) from exc

    def _release_quietly(self, key: str) -> None:
        """Hand a slot back while another error is on its way out; that error is the one
        reported (an unreturned slot only counts as a failure until the window ends)."""
        with contextlib.suppress(LockoutUnavailable):
            self._release(key)


def _marked(item: dict[str, Any], attribute: str, mark: str) -> bool:
    """Whether `item` carries this request's own mark: its change was applied."""
    return bool(item.get(attribute, {}).get("S") == mark)


def _number(item: dict[str, Any], attribute: str) -> int:
    return int(item.get(attribute, {}).get("N", "0"))


def _reason(exc: Exception) -> str:
    return str(aws.error_code(exc) or type(exc).__name__)
