"""One botocore session per process, from which the functions build their clients.

Every new session loads botocore's endpoint, partition and retry data again:
about 50 ms for each client after the first in a cold start, which an
authenticated API request pays twice (Secrets Manager for the database login,
DynamoDB for the key's rate limit). Clients built from one session share what it
has loaded. A session is not thread-safe, so clients are created under a lock;
the clients themselves are thread-safe and are cached by their callers.

botocore, not boto3: the functions use low-level clients only, which are
botocore's, and importing boto3 also imports s3transfer (about 50 ms of a cold
start that no function needs).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import botocore.session

_lock = threading.Lock()
_session: botocore.session.Session | None = None


def new_client(service: str, **options: Any) -> Any:
    """A new client for `service` (`create_client()` options) from the shared session."""
    global _session
    with _lock:
        if _session is None:
            import botocore.session

            _session = botocore.session.get_session()
        return _session.create_client(service, **options)


@dataclass(frozen=True)
class Timeouts:
    """How long a client waits and how often it retries (botocore's standard mode)."""

    connect_seconds: float
    read_seconds: float
    max_attempts: int

    @property
    def worst_case_seconds(self) -> float:
        """The longest one call can take before it raises: every attempt stalled
        to its timeouts, and the longest waits between attempts (standard mode
        backs off up to 2**i s, at most 20, and up to 5 s more when AWS asks
        for it with retry-after)."""
        waits = sum(min(1 << i, 20) + 5 for i in range(self.max_attempts - 1))
        return self.max_attempts * (self.connect_seconds + self.read_seconds) + waits


# On an API request: a slow dependency must turn into a quick 503, not a Lambda
# timeout and API Gateway's 504. One retry: with three attempts one stalled call
# could take 28 s of the API's 29.
REQUEST = Timeouts(connect_seconds=2, read_seconds=3, max_attempts=2)
# Undoing a request's own write after it failed (a webhook claim released): the
# request answers 503 either way, and what a failed undo leaves expires with its
# lease. One short attempt keeps that 503 inside the gateway's wait after a call
# that already stalled to REQUEST's limit.
CLEANUP = Timeouts(connect_seconds=1, read_seconds=1, max_attempts=1)
# The per-key rate limit: asked on every keyed request, and it fails open (the
# request goes through uncounted), so a long wait buys nothing but latency. DynamoDB
# answers in milliseconds in-region; a stall costs about 3 s (two 1 s timeouts and
# the wait between; 10 s, worst_case_seconds, if DynamoDB asks for a longer wait),
# and rate_limit.py then skips DynamoDB for a while instead of paying that on every
# request.
RATE_LIMIT = Timeouts(connect_seconds=1, read_seconds=1, max_attempts=2)
# Rotation steps and the responder: room for a slow call, still inside the
# function's timeout (worst_case_seconds; tests/infrastructure/test_functions.py),
# so a stalled call ends in the step's own error and the caller's retry.
BACKGROUND = Timeouts(connect_seconds=3, read_seconds=10, max_attempts=4)

_cache_lock = threading.Lock()
_cached: dict[tuple[str, str, str | None, Timeouts], Any] = {}


def client_config(timeouts: Timeouts) -> Any:
    from botocore.config import Config

    return Config(
        connect_timeout=timeouts.connect_seconds,
        read_timeout=timeouts.read_seconds,
        # total_max_attempts counts the first attempt; botocore's max_attempts counts
        # only the retries after it, which sent a stalled call once more than planned.
        retries={"mode": "standard", "total_max_attempts": timeouts.max_attempts},
    )


def cached_client(service: str, timeouts: Timeouts) -> Any:
    """One client per service, region, endpoint and timeouts, created on first use."""
    from functions.shared.settings import get_settings

    settings = get_settings()
    key = (service, settings.region, settings.aws_endpoint_url, timeouts)
    found = _cached.get(key)
    if found is not None:
        return found
    with _cache_lock:
        found = _cached.get(key)
        if found is None:
            found = new_client(
                service,
                region_name=settings.region,
                endpoint_url=settings.aws_endpoint_url,
                config=client_config(timeouts),
            )
            _cached[key] = found
    return found


def clear_cached_clients() -> None:
    """Forget every cached client (a process now pointed at another endpoint)."""
    with _cache_lock:
        _cached.clear()


def condition_item(error: BaseException) -> dict[str, Any]:
    """The item a failed DynamoDB condition was checked against
    (ReturnValuesOnConditionCheckFailure=ALL_OLD); empty when there was none."""
    response = getattr(error, "response", None)
    item = response.get("Item") if isinstance(response, dict) else None
    return item if isinstance(item, dict) else {}


def error_code(error: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError, without importing botocore."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if isinstance(code, str):
            return code
    return None
