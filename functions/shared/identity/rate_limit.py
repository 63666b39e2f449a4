"""Fixed-window rate limits in DynamoDB, shared by every Lambda instance.

One item per (key, window). A hit is one UpdateItem that adds 1 only while the
count is below the limit (a conditional update, atomic in DynamoDB), so two
instances racing on the same key can never both take the last slot. Items carry
a TTL and disappear after their window.

A fixed window lets a client spend its limit at the end of one window and again
at the start of the next (at most twice the limit across the boundary); that is
accepted here in exchange for one write per request.

When DynamoDB fails to answer, the caller lets the request through (fail open).
This instance then leaves DynamoDB alone for PAUSE_AFTER_FAILURE_SECONDS: while it
is down or stalling, one keyed request per instance and pause waits on it, instead
of every keyed request adding the stall to its latency (and holding its Lambda
instance for that long, which under load spends the function's concurrency).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from functions.shared import names
from functions.shared.identity import aws
from functions.shared.settings import get_settings

# The random mark of the request that last counted on an item.
MARK_ATTRIBUTE = "last_hit"


# How long one instance skips the limiter after DynamoDB failed to answer it.
PAUSE_AFTER_FAILURE_SECONDS = 10.0


class RateLimitUnavailable(Exception):
    """DynamoDB could not be asked; the caller decides whether to fail open or closed.

    `paused`: it was not asked now, having failed moments ago (PauseAfterFailure).
    """

    def __init__(self, reason: str, *, paused: bool = False):
        super().__init__(reason)
        self.paused = paused


class PauseAfterFailure:
    """Per instance: whether DynamoDB failed the limiter moments ago (monotonic clock;
    a float written whole, so threads of the local server may share it)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._until: float | None = None

    def active(self) -> bool:
        until = self._until
        return until is not None and self.clock() < until

    def start(self) -> None:
        self._until = self.clock() + PAUSE_AFTER_FAILURE_SECONDS

    def clear(self) -> None:
        self._until = None


pause = PauseAfterFailure()


@dataclass(frozen=True)
class RateLimitDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after_seconds: int


class FixedWindowRateLimiter:
    def __init__(
        self,
        *,
        window_seconds: int = 60,
        table_name: str | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self._window = window_seconds
        self._table_name = table_name
        self._clock = clock

    def hit(self, key: str, limit: int) -> RateLimitDecision:
        """Count one request against `key`; allowed only while under `limit` this window."""
        now = self._clock()
        window_start = int(now) - int(now) % self._window
        window_end = window_start + self._window
        retry_after = max(1, window_end - int(now))
        if limit <= 0:
            return RateLimitDecision(False, limit, 0, retry_after)
        if pause.active():
            raise RateLimitUnavailable("failed moments ago", paused=True)
        table = self._table_name or get_settings().rate_limit_table
        # This request's mark on the item. botocore retries a call whose answer was
        # lost, and ADD is not idempotent: a retry that finds its own mark was applied
        # already, and counts once.
        mark = secrets.token_hex(8)
        try:
            response = aws.dynamodb_rate_limit().update_item(
                TableName=table,
                Key={names.RATE_LIMIT_PARTITION_KEY: {"S": f"{key}#{window_start}"}},
                UpdateExpression=(
                    "ADD hits :one SET #ttl = if_not_exists(#ttl, :ttl), #mark = :mark"
                ),
                ConditionExpression=(
                    "(attribute_not_exists(hits) OR hits < :limit) "
                    "AND (attribute_not_exists(#mark) OR #mark <> :mark)"
                ),
                ExpressionAttributeNames={"#ttl": names.TTL_ATTRIBUTE, "#mark": MARK_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":limit": {"N": str(limit)},
                    # A window's item outlives it briefly, for anyone reading it late.
                    ":ttl": {"N": str(window_end + self._window)},
                    ":mark": {"S": mark},
                },
                ReturnValues="UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except Exception as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                pause.start()
                raise RateLimitUnavailable(str(aws.error_code(exc) or type(exc).__name__)) from exc
            held = aws.condition_item(exc)
            if held.get(MARK_ATTRIBUTE, {}).get("S") != mark:
                return RateLimitDecision(False, limit, 0, retry_after)
            # This request's own earlier attempt: counted once, allowed.
            hits = int(held.get("hits", {}).get("N", limit))
            return RateLimitDecision(True, limit, max(0, limit - hits), retry_after)
        hits = int(response["Attributes"]["hits"]["N"])
        return RateLimitDecision(True, limit, max(0, limit - hits), retry_after)
