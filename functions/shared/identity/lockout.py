"""Failed sign-in backoff per account and per source IP, stored in DynamoDB.

State lives in DynamoDB so it holds across Lambda instances: an attacker
spreading guesses over many concurrent invocations meets the same counters.
After `threshold` failures inside the window the key is locked for
base * 2**(failures - threshold) seconds, capped. Accounts are keyed by a hash
of the normalised email, whether or not the account exists, so a lockout says
nothing about which emails are registered and no email is stored.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from functions.shared import names
from functions.shared.identity import aws
from functions.shared.settings import get_settings


class LockoutUnavailable(Exception):
    """DynamoDB could not be asked; sign-in fails closed."""


@dataclass(frozen=True)
class LockoutKeys:
    account: str
    source_ip: str


@dataclass(frozen=True)
class FailureOutcome:
    account_failures: int
    ip_failures: int
    # Seconds of lockout this failure started (0 if none), for the lockout metric.
    locked_for_seconds: int


def lockout_keys(email: str, source_ip: str) -> LockoutKeys:
    digest = hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()
    return LockoutKeys(f"signin#account#{digest}", f"signin#ip#{source_ip}")


class SignInLockout:
    def __init__(self, *, table_name: str | None = None, clock: Callable[[], float] = time.time):
        self._table_name = table_name
        self._clock = clock

    @property
    def _table(self) -> str:
        return self._table_name or get_settings().rate_limit_table

    def retry_after(self, keys: LockoutKeys) -> int:
        """Seconds until sign-in may be tried again for these keys; 0 if not locked."""
        now = self._clock()
        pk = names.RATE_LIMIT_PARTITION_KEY
        try:
            response = aws.dynamodb().batch_get_item(
                RequestItems={
                    self._table: {
                        "Keys": [{pk: {"S": keys.account}}, {pk: {"S": keys.source_ip}}],
                        "ConsistentRead": True,
                        "ProjectionExpression": "locked_until",
                    }
                }
            )
        except Exception as exc:
            raise LockoutUnavailable(str(aws.error_code(exc) or type(exc).__name__)) from exc
        if response.get("UnprocessedKeys"):
            raise LockoutUnavailable("unprocessed keys")
        wait = 0
        for item in response.get("Responses", {}).get(self._table, []):
            locked_until = int(item.get("locked_until", {}).get("N", "0"))
            wait = max(wait, int(locked_until - now + 0.999))
        return max(0, wait)

    def record_failure(self, keys: LockoutKeys) -> FailureOutcome:
        settings = get_settings()
        account = self._count(
            keys.account,
            settings.login_account_failure_threshold,
        )
        ip = self._count(keys.source_ip, settings.login_ip_failure_threshold)
        return FailureOutcome(account[0], ip[0], max(account[1], ip[1]))

    def record_success(self, keys: LockoutKeys) -> None:
        """A correct password clears the account's count (not the IP's: one good
        account must not reset an IP that is guessing at others)."""
        try:
            aws.dynamodb().delete_item(
                TableName=self._table,
                Key={names.RATE_LIMIT_PARTITION_KEY: {"S": keys.account}},
            )
        except Exception as exc:
            raise LockoutUnavailable(str(aws.error_code(exc) or type(exc).__name__)) from exc

    def _count(self, key: str, threshold: int) -> tuple[int, int]:
        """Add one failure to `key`; returns (failures in window, lock seconds started)."""
        settings = get_settings()
        now = int(self._clock())
        window_end = now + settings.login_failure_window_seconds
        client = aws.dynamodb()
        pk = names.RATE_LIMIT_PARTITION_KEY
        try:
            try:
                response = client.update_item(
                    TableName=self._table,
                    Key={pk: {"S": key}},
                    UpdateExpression="ADD failures :one SET #ttl = :ttl",
                    # A record past its window counts as gone, even before the TTL sweep.
                    ConditionExpression="attribute_not_exists(#pk) OR #ttl > :now",
                    ExpressionAttributeNames={"#ttl": names.TTL_ATTRIBUTE, "#pk": pk},
                    ExpressionAttributeValues={
                        ":one": {"N": "1"},
                        ":ttl": {"N": str(window_end)},
                        ":now": {"N": str(now)},
                    },
                    ReturnValues="ALL_NEW",
                )
                failures = int(response["Attributes"]["failures"]["N"])
            except Exception as exc:
                if aws.error_code(exc) != "ConditionalCheckFailedException":
                    raise
                client.put_item(
                    TableName=self._table,
                    Item={
                        pk: {"S": key},
                        "failures": {"N": "1"},
                        names.TTL_ATTRIBUTE: {"N": str(window_end)},
                    },
                )
                failures = 1
            if failures < threshold:
                return failures, 0
            lock_seconds = min(
                settings.login_lockout_max_seconds,
                settings.login_lockout_base_seconds * 2 ** min(failures - threshold, 20),
            )
            locked_until = now + lock_seconds
            client.update_item(
                TableName=self._table,
                Key={pk: {"S": key}},
                UpdateExpression="SET locked_until = :until, #ttl = :ttl",
                ExpressionAttributeNames={"#ttl": names.TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":until": {"N": str(locked_until)},
                    ":ttl": {"N": str(max(window_end, locked_until))},
                },
            )
            return failures, lock_seconds
        except Exception as exc:
            raise LockoutUnavailable(str(aws.error_code(exc) or type(exc).__name__)) from exc
