"""Per-key fixed-window limits in DynamoDB (moto server, real API calls)."""

from __future__ import annotations

import threading

import pytest

from functions.shared.identity.rate_limit import FixedWindowRateLimiter, RateLimitUnavailable


class ManualClock:
    def __init__(self, now: float = 1_700_000_050.0):
        self.now = now

    def __call__(self):
        return self.now


def test_requests_under_the_limit_pass_and_the_next_is_refused(identity_env):
    clock = ManualClock()
    limiter = FixedWindowRateLimiter(clock=clock)
    decisions = [limiter.hit("key-a", 3) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    # The refusal says when the window ends (the clock is 10 s into a 60 s window)
    assert decisions[3].retry_after_seconds == 50


def test_keys_are_counted_separately(identity_env):
    limiter = FixedWindowRateLimiter(clock=ManualClock())
    assert limiter.hit("key-a", 1).allowed
    assert not limiter.hit("key-a", 1).allowed
    assert limiter.hit("key-b", 1).allowed


def test_a_new_window_starts_a_new_count(identity_env):
    clock = ManualClock()
    limiter = FixedWindowRateLimiter(clock=clock)
    assert limiter.hit("key-a", 1).allowed
    assert not limiter.hit("key-a", 1).allowed
    clock.now += 60
    assert limiter.hit("key-a", 1).allowed


def test_zero_limit_refuses_everything(identity_env):
    assert not FixedWindowRateLimiter(clock=ManualClock()).hit("key-a", 0).allowed


def test_two_concurrent_callers_cannot_together_exceed_the_limit(identity_env):
    # Given one key with a limit of 15 per minute, and two callers (as two Lambda
    # instances would be) each sending 20 requests at the same moment
    limit = 15
    clock = ManualClock()
    barrier = threading.Barrier(2)
    allowed = [0, 0]

    def caller(index: int) -> None:
        limiter = FixedWindowRateLimiter(clock=clock)
        barrier.wait()
        for _ in range(20):
            if limiter.hit("shared-key", limit).allowed:
                allowed[index] += 1

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly the limit got through, shared between them
    assert sum(allowed) == limit


def test_missing_table_is_reported_not_treated_as_allowed(identity_env):
    limiter = FixedWindowRateLimiter(table_name="no-such-table", clock=ManualClock())
    with pytest.raises(RateLimitUnavailable):
        limiter.hit("key-a", 5)
