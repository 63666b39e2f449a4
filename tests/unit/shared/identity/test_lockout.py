"""Sign-in backoff per account and per IP, shared across instances through DynamoDB."""

from __future__ import annotations

import pytest

from functions.shared.identity.lockout import LockoutUnavailable, SignInLockout, lockout_keys


class ManualClock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return ManualClock()


def test_failures_below_threshold_do_not_lock(identity_env, clock):
    lockout = SignInLockout(clock=clock)
    keys = lockout_keys("a@example.com", "198.51.100.1")
    for _ in range(4):
        assert lockout.record_failure(keys).locked_for_seconds == 0
    assert lockout.retry_after(keys) == 0


def test_threshold_locks_the_account_and_backoff_doubles(identity_env, clock):
    lockout = SignInLockout(clock=clock)
    keys = lockout_keys("a@example.com", "198.51.100.1")
    for _ in range(4):
        lockout.record_failure(keys)
    # The fifth failure locks for the base time
    assert lockout.record_failure(keys).locked_for_seconds == 30
    assert lockout.retry_after(keys) == 30
    # Each further failure doubles it
    assert lockout.record_failure(keys).locked_for_seconds == 60
    assert lockout.record_failure(keys).locked_for_seconds == 120
    # And the lock ends when its time is up
    clock.now += 121
    assert lockout.retry_after(keys) == 0


def test_backoff_is_capped(identity_env, clock):
    lockout = SignInLockout(clock=clock)
    keys = lockout_keys("a@example.com", "198.51.100.1")
    outcomes = [lockout.record_failure(keys) for _ in range(20)]
    assert max(o.locked_for_seconds for o in outcomes) == 15 * 60


def test_lock_holds_across_instances(identity_env, clock):
    # Given failures recorded by one instance
    keys = lockout_keys("a@example.com", "198.51.100.1")
    first = SignInLockout(clock=clock)
    for _ in range(5):
        first.record_failure(keys)
    # Then another instance sees the lock
    assert SignInLockout(clock=clock).retry_after(keys) > 0


def test_account_key_ignores_case_and_spaces_and_never_holds_the_email(identity_env):
    keys = lockout_keys("  Alice@Example.COM ", "198.51.100.1")
    assert keys == lockout_keys("alice@example.com", "198.51.100.1")
    assert "alice" not in keys.account.lower()


def test_success_clears_the_account_but_not_the_ip(identity_env, clock, monkeypatch):
    monkeypatch.setenv("LOGIN_IP_FAILURE_THRESHOLD", "6")
    lockout = SignInLockout(clock=clock)
    keys = lockout_keys("a@example.com", "198.51.100.1")
    for _ in range(4):
        lockout.record_failure(keys)
    lockout.record_success(keys)
    # The account starts over, the IP keeps counting
    outcome = lockout.record_failure(keys)
    assert outcome.account_failures == 1
    assert outcome.ip_failures == 5


def test_one_ip_guessing_many_accounts_is_locked(identity_env, clock, monkeypatch):
    # Given an IP threshold of 10 and an IP trying a different email each time
    monkeypatch.setenv("LOGIN_IP_FAILURE_THRESHOLD", "10")
    lockout = SignInLockout(clock=clock)
    for index in range(10):
        lockout.record_failure(lockout_keys(f"user{index}@example.com", "203.0.113.66"))
    # Then the IP is locked even for an email it never tried
    assert lockout.retry_after(lockout_keys("fresh@example.com", "203.0.113.66")) > 0
    # And another IP is not
    assert lockout.retry_after(lockout_keys("fresh@example.com", "203.0.113.67")) == 0


def test_failures_outside_the_window_are_forgotten(identity_env, clock):
    lockout = SignInLockout(clock=clock)
    keys = lockout_keys("a@example.com", "198.51.100.1")
    for _ in range(4):
        lockout.record_failure(keys)
    clock.now += 15 * 60 + 1
    assert lockout.record_failure(keys).account_failures == 1


def test_unreadable_store_fails_closed(identity_env, clock):
    lockout = SignInLockout(table_name="no-such-table", clock=clock)
    keys = lockout_keys("a@example.com", "198.51.100.1")
    with pytest.raises(LockoutUnavailable):
        lockout.retry_after(keys)
    with pytest.raises(LockoutUnavailable):
        lockout.record_failure(keys)
