"""The secret-versions cache: expiry, and early reloads when a caller meets a version it
does not know (a kid, a webhook signature), rate-limited on their own clock."""

from __future__ import annotations

import threading
import time

import pytest

from functions.shared.identity.secret_versions import (
    SecretUnavailable,
    SecretVersion,
    SecretVersions,
    SecretVersionsCache,
)

SECRET = "babyshield/test-secret"  # pragma: allowlist secret
ONE = SecretVersions(SecretVersion("v1", "one"), None)
TWO = SecretVersions(SecretVersion("v2", "two"), SecretVersion("v1", "one"))


class ManualClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeSecretsManager:
    """A loader that counts its calls and serves whatever the test made current."""

    def __init__(self, versions: SecretVersions = ONE):
        self.versions = versions
        self.loads = 0
        self.failing = False

    def __call__(self, secret_id: str) -> SecretVersions:
        self.loads += 1
        if self.failing:
            raise SecretUnavailable(secret_id)
        return self.versions


def warm_cache(manager: FakeSecretsManager, clock: ManualClock) -> SecretVersionsCache:
    """A cache that has just done an ordinary (expiry-driven) load."""
    cache = SecretVersionsCache(loader=manager, clock=clock)
    assert cache.get(SECRET, max_age=60) == ONE
    return cache


@pytest.mark.parametrize("after", [0.0, 0.5, 2.0, 4.9])
def test_a_miss_right_after_an_ordinary_load_reloads(after):
    """Protects the first token or webhook signed after a rotation on a warm instance."""
    # Given an instance that loaded the secret moments ago
    manager, clock = FakeSecretsManager(), ManualClock()
    cache = warm_cache(manager, clock)
    # When the secret rotates and a caller meets the new version
    manager.versions = TWO
    clock.now += after
    # Then the miss reloads at once instead of waiting out the ordinary load's age
    assert cache.refresh(SECRET) == TWO
    assert manager.loads == 2
    # and the reloaded versions are what ordinary reads see from then on
    assert cache.get(SECRET, max_age=60) == TWO
    assert manager.loads == 2


def test_misses_reload_at_most_once_per_interval():
    """Protects Secrets Manager from garbage input: one read per 5 s, however many misses."""
    # Given a warm instance whose first miss reloaded
    manager, clock = FakeSecretsManager(), ManualClock()
    cache = warm_cache(manager, clock)
    clock.now += 1
    manager.versions = TWO
    assert cache.refresh(SECRET) == TWO
    # When misses keep coming inside the interval
    for step in range(1, 50):
        clock.now = 1001 + step * 0.099
        # Then they cost no call and get the versions already cached
        assert cache.refresh(SECRET) == TWO
    assert manager.loads == 2
    # And the first miss after the interval may reload again
    clock.now = 1006
    cache.refresh(SECRET)
    assert manager.loads == 3


def test_a_failed_miss_reload_still_counts_against_the_interval():
    """Protects a struggling Secrets Manager from being called once per forged request."""
    manager, clock = FakeSecretsManager(), ManualClock()
    cache = warm_cache(manager, clock)
    manager.failing = True
    clock.now += 1
    with pytest.raises(SecretUnavailable):
        cache.refresh(SECRET)
    clock.now += 1
    assert cache.refresh(SECRET) == ONE
    assert manager.loads == 2


def test_a_burst_of_concurrent_misses_costs_one_reload():
    """Protects both sides of a thread race: one call, and every thread sees its result."""
    # Given a warm cache whose reloads are slow
    manager, clock = FakeSecretsManager(), ManualClock()

    def slow_loader(secret_id: str) -> SecretVersions:
        time.sleep(0.05)
        return manager(secret_id)

    cache = SecretVersionsCache(loader=slow_loader, clock=clock)
    cache.get(SECRET, max_age=60)
    manager.versions = TWO
    clock.now += 1
    start = threading.Barrier(8)
    results: list[SecretVersions | None] = []

    def miss() -> None:
        start.wait()
        results.append(cache.refresh(SECRET))

    # When eight threads meet the new version at once
    threads = [threading.Thread(target=miss) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    # Then Secrets Manager is read once and every thread gets the new versions
    assert manager.loads == 2
    assert results == [TWO] * 8


def test_clear_forgets_the_miss_interval_too():
    """Protects test isolation and cold-start behaviour after reset_caches()."""
    manager, clock = FakeSecretsManager(), ManualClock()
    cache = warm_cache(manager, clock)
    clock.now += 1
    cache.refresh(SECRET)
    cache.clear()
    manager.versions = TWO
    assert cache.refresh(SECRET) == TWO
    assert manager.loads == 3
