"""Sign-in backoff per account and per IP, shared across instances through DynamoDB."""

from __future__ import annotations

import pytest

from functions.shared.identity.lockout import (
    PENDING_RETRY_SECONDS,
    FailureOutcome,
    LockedOut,
    LockoutKeys,
    LockoutUnavailable,
    SignInLockout,
    lockout_keys,
    source_key,
)


class ManualClock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return ManualClock()


def fail(lockout: SignInLockout, keys: LockoutKeys) -> FailureOutcome:
    """One wrong password, the way sign-in makes it: reserve the attempt, then fail it."""
    return lockout.record_failure(lockout.reserve(keys))


def test_failures_below_threshold_do_not_lock(identity_env, clock):
    lockout = SignInLockout(clock=clock)
    keys = lockout_keys("a@example.com", "198.51.100.1")
    for _ in range(4):
        assert fail(lockout, keys).locked_for_seconds == 0
    assert lockout.retry_after(keys) == 0


def test_threshold_locks_the_account_and_backoff_doubles(identity_env, clock):
    lockout = SignInLockout(clock=clock)
    keys = lockout_keys("a@example.com", "198.51.100.1")
    for _ in range(4):
        fail(lockout, keys)
    # The fifth failure locks for the base time
    assert fail(lockout, keys).locked_for_seconds == 30
    assert lockout.retry_after(keys) == 30
    # and while it holds, no attempt can be reserved
    with pytest.raises(LockedOut) as locked:
        lockout.reserve(keys)
    assert locked.value.retry_after_seconds == 30
    # Once it has passed, the next failure doubles it, and the next again
    clock.now += 30
    assert fail(lockout, keys).locked_for_seconds == 60
    clock.now += 60
    assert fail(lockout, keys).locked_for_seconds == 120
    # And the lock ends when its time is up
    clock.now += 121
    assert lockout.retry_after(keys) == 0


def test_backoff_is_capped(identity_env, clock):
    lockout = SignInLockout(clock=clock)
    keys = lockout_keys("a@example.com", "198.51.100.1")
    outcomes = []
    for _ in range(20):
        try:
            reservation = lockout.reserve(keys)
        except LockedOut as locked:
            clock.now += locked.retry_after_seconds
            reservation = lockout.reserve(keys)
        outcomes.append(lockout.record_failure(reservation))
    locks = [o.locked_for_seconds for o in outcomes]
    # Doubling from the threshold up to the cap, and the cap for every guess after
    # it: the record outlives its longest lock, so a guess after it never starts over.
    assert locks == [0] * 4 + [30, 60, 120, 240, 480] + [15 * 60] * 11
    assert [o.account_failures for o in outcomes] == list(range(1, 21))


def test_a_quiet_window_after_a_lock_forgets_the_failures(identity_env, clock):
    lockout = SignInLockout(clock=clock)
    keys = lockout_keys("a@example.com", "198.51.100.1")
    for _ in range(5):
        fail(lockout, keys)
    # Still remembered a whole window after the lock: one attempt, then a longer lock
    clock.now += 30 + 15 * 60 - 1
    assert fail(lockout, keys).locked_for_seconds == 60
    # A window without a guess after that lock ends: a fresh count
    clock.now += 60 + 15 * 60
    assert fail(lockout, keys) == FailureOutcome(1, 1, 0)


def test_lock_holds_across_instances(identity_env, clock):
    # Given failures recorded by one instance
    keys = lockout_keys("a@example.com", "198.51.100.1")
    first = SignInLockout(clock=clock)
    for _ in range(5):
        fail(first, keys)
    # Then another instance sees the lock, and cannot reserve an attempt
    second = SignInLockout(clock=clock)
    assert second.retry_after(keys) > 0
    with pytest.raises(LockedOut):
        second.reserve(keys)


def test_account_key_ignores_case_and_spaces_and_never_holds_the_email(identity_env):
    keys = lockout_keys("  Alice@Example.COM ", "198.51.100.1")
    assert keys == lockout_keys("alice@example.com", "198.51.100.1")
    assert "alice" not in keys.account.lower()


def test_success_clears_the_account_but_not_the_ip(identity_env, clock, monkeypatch):
    monkeypatch.setenv("LOGIN_IP_FAILURE_THRESHOLD", "6")
    lockout = SignInLockout(clock=clock)
    keys = lockout_keys("a@example.com", "198.51.100.1")
    for _ in range(4):
        fail(lockout, keys)
    lockout.record_success(lockout.reserve(keys))
    # The account starts over, the IP keeps counting
    outcome = fail(lockout, keys)
    assert outcome.account_failures == 1
    assert outcome.ip_failures == 5


def test_one_ip_guessing_many_accounts_is_locked(identity_env, clock, monkeypatch):
    # Given an IP threshold of 10 and an IP trying a different email each time
    monkeypatch.setenv("LOGIN_IP_FAILURE_THRESHOLD", "10")
    lockout = SignInLockout(clock=clock)
    for index in range(10):
        fail(lockout, lockout_keys(f"user{index}@example.com", "203.0.113.66"))
    # Then the IP is locked even for an email it never tried
    assert lockout.retry_after(lockout_keys("fresh@example.com", "203.0.113.66")) > 0
    # And another IP is not
    assert lockout.retry_after(lockout_keys("fresh@example.com", "203.0.113.67")) == 0


def test_failures_outside_the_window_are_forgotten(identity_env, clock):
    lockout = SignInLockout(clock=clock)
    keys = lockout_keys("a@example.com", "198.51.100.1")
    for _ in range(4):
        fail(lockout, keys)
    clock.now += 15 * 60 + 1
    assert fail(lockout, keys).account_failures == 1


def test_unreadable_store_fails_closed(identity_env, clock):
    lockout = SignInLockout(table_name="no-such-table", clock=clock)
    keys = lockout_keys("a@example.com", "198.51.100.1")
    with pytest.raises(LockoutUnavailable):
        lockout.retry_after(keys)
    with pytest.raises(LockoutUnavailable):
        lockout.reserve(keys)


# --- attempts are reserved before a password is checked ---------------------------------


def test_no_more_than_the_threshold_can_be_reserved_before_any_outcome(identity_env, clock):
    # Given five checks in flight at once for one account (reserved, no outcome yet)
    lockout = SignInLockout(clock=clock)
    keys = lockout_keys("a@example.com", "198.51.100.1")
    in_flight = [lockout.reserve(keys) for _ in range(5)]
    assert [r.account_attempts for r in in_flight] == [1, 2, 3, 4, 5]
    # Then a sixth is refused and told to come back shortly: the fifth ends in a lock or a clear
    with pytest.raises(LockedOut) as pending:
        lockout.reserve(lockout_keys("a@example.com", "203.0.113.9"))
    assert pending.value.retry_after_seconds == PENDING_RETRY_SECONDS
    # When the checks fail, the fifth locks the account for the base time
    outcomes = [lockout.record_failure(r) for r in in_flight]
    assert [o.locked_for_seconds for o in outcomes] == [0, 0, 0, 0, 30]
    with pytest.raises(LockedOut) as locked:
        lockout.reserve(keys)
    assert locked.value.retry_after_seconds == 30


def test_after_a_lock_only_one_attempt_at_a_time(identity_env, clock):
    # Given an account locked at its threshold, and the lock has passed
    lockout = SignInLockout(clock=clock)
    keys = lockout_keys("a@example.com", "198.51.100.1")
    for _ in range(5):
        fail(lockout, keys)
    clock.now += 30
    # When one attempt is reserved
    next_try = lockout.reserve(keys)
    assert next_try.account_attempts == 6
    # Then no other can be until it has an outcome
    with pytest.raises(LockedOut):
        lockout.reserve(lockout_keys("a@example.com", "203.0.113.9"))
    # And a failure locks it again, for twice as long
    assert lockout.record_failure(next_try).locked_for_seconds == 60


def test_a_check_that_never_happened_hands_its_attempt_back(identity_env, clock):
    lockout = SignInLockout(clock=clock)
    keys = lockout_keys("a@example.com", "198.51.100.1")
    in_flight = [lockout.reserve(keys) for _ in range(5)]
    # When one of them could not check the password (the database was down)
    lockout.release(in_flight[0])
    # Then its attempt can be taken again, for this account and this source
    again = lockout.reserve(keys)
    assert (again.account_attempts, again.ip_attempts) == (5, 5)


def test_a_refused_source_does_not_spend_the_accounts_attempt(identity_env, clock, monkeypatch):
    # Given a source locked after one failure
    monkeypatch.setenv("LOGIN_IP_FAILURE_THRESHOLD", "1")
    lockout = SignInLockout(clock=clock)
    fail(lockout, lockout_keys("other@example.com", "203.0.113.66"))
    # When it tries another account
    with pytest.raises(LockedOut):
        lockout.reserve(lockout_keys("a@example.com", "203.0.113.66"))
    # Then that account has spent nothing
    assert lockout.reserve(lockout_keys("a@example.com", "198.51.100.1")).account_attempts == 1


def test_a_success_meanwhile_means_a_late_failure_does_not_lock(identity_env, clock):
    # Given five checks in flight, and the fourth is the owner's correct password
    lockout = SignInLockout(clock=clock)
    keys = lockout_keys("a@example.com", "198.51.100.1")
    in_flight = [lockout.reserve(keys) for _ in range(5)]
    lockout.record_success(in_flight[3])
    # When the fifth (counted at the threshold) then fails
    outcome = lockout.record_failure(in_flight[4])
    # Then it does not lock the account the success has cleared
    assert outcome.locked_for_seconds == 0
    assert lockout.retry_after(keys) == 0
    assert lockout.reserve(keys).account_attempts == 1


# --- which source an address counts as -------------------------------------------------


def test_ipv6_sources_are_counted_per_64():
    assert source_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert source_key("2001:DB8:1:2:ffff:ffff:ffff:fffe") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:3::1") == "2001:db8:1:3::/64"


def test_ipv4_sources_are_counted_per_address_however_written():
    assert source_key("198.51.100.7") == "198.51.100.7"
    assert source_key("::ffff:198.51.100.7") == "198.51.100.7"
    assert source_key("198.51.100.8") != source_key("198.51.100.7")


def test_text_that_is_no_address_keeps_its_own_counter():
    assert source_key("") == ""
    assert source_key("unknown") == "unknown"


def test_addresses_in_one_ipv6_64_share_a_counter(identity_env, clock, monkeypatch):
    # Given an IP threshold of 3, and a source rotating its address inside one /64
    monkeypatch.setenv("LOGIN_IP_FAILURE_THRESHOLD", "3")
    lockout = SignInLockout(clock=clock)
    for index, address in enumerate(("2001:db8:a:b::1", "2001:db8:a:b:1::2", "2001:db8:a:b::ff")):
        fail(lockout, lockout_keys(f"user{index}@example.com", address))
    # Then a further address in that /64 is locked, even for an email it never tried
    assert lockout.retry_after(lockout_keys("fresh@example.com", "2001:db8:a:b:ffff::9")) > 0
    # And an address in the next /64 is not
    assert lockout.retry_after(lockout_keys("fresh@example.com", "2001:db8:a:c::1")) == 0


def test_an_ipv4_mapped_source_is_its_ipv4_address(identity_env, clock, monkeypatch):
    monkeypatch.setenv("LOGIN_IP_FAILURE_THRESHOLD", "2")
    lockout = SignInLockout(clock=clock)
    fail(lockout, lockout_keys("user1@example.com", "::ffff:203.0.113.9"))
    fail(lockout, lockout_keys("user2@example.com", "203.0.113.9"))
    assert lockout.retry_after(lockout_keys("fresh@example.com", "203.0.113.9")) > 0
    assert lockout.retry_after(lockout_keys("fresh@example.com", "::ffff:203.0.113.9")) > 0
    # While its neighbours, and the IPv6 /64 the mapped form sits in, are counted apart
    assert lockout.retry_after(lockout_keys("fresh@example.com", "203.0.113.10")) == 0
    assert lockout.retry_after(lockout_keys("fresh@example.com", "::1")) == 0
