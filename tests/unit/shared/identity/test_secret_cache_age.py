"""A cached entry is as old as the values it holds: counted from when its load started,
not from when a slow load returned.

The JWT rotation guard (functions/rotate_jwt/key_pair.py) lets a routine rotation drop
the previous key once ACCESS_TOKEN_TTL_SECONDS + JWT_LEEWAY_SECONDS +
SECRET_CACHE_SECONDS + 1 s have passed since the promotion, trusting that a warm
instance signs with the old key for at most SECRET_CACHE_SECONDS after it. A load reads
AWSCURRENT first and AWSPREVIOUS after it; when that second read is slow (the request
client allows about 16 s with its retry), an entry dated at the end of the load kept
the old key signing for that much longer, and its last tokens were refused before they
expired.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from functions.shared.identity.secret_versions import (
    SecretVersion,
    SecretVersions,
    SecretVersionsCache,
)
from tests.support.clock import ManualClock

SECRET = "babyshield/test-secret"  # pragma: allowlist secret
OLD = SecretVersions(SecretVersion("v1", "one"), None)
NEW = SecretVersions(SecretVersion("v2", "two"), SecretVersion("v1", "one"))
SLOW_SECOND_READ = 16.0


class SlowSecretsManager:
    """AWSCURRENT is read as the load starts; the load returns SLOW_SECOND_READ later."""

    def __init__(self, clock: ManualClock):
        self.clock = clock
        self.versions = OLD
        self.loads = 0

    def __call__(self, secret_id: str) -> SecretVersions:
        self.loads += 1
        read = self.versions
        self.clock.now += SLOW_SECOND_READ
        return read


def _ordinary_load(cache: SecretVersionsCache) -> None:
    cache.get(SECRET, max_age=60)


def _miss_driven_load(cache: SecretVersionsCache) -> None:
    cache.refresh(SECRET)


@pytest.mark.parametrize("load", [_ordinary_load, _miss_driven_load])
def test_an_entry_expires_max_age_after_its_values_were_read(
    load: Callable[[SecretVersionsCache], None],
) -> None:
    # Given an instance whose load read AWSCURRENT at t0 and returned 16 s later
    clock = ManualClock(1000.0)
    manager = SlowSecretsManager(clock)
    cache = SecretVersionsCache(loader=manager, clock=clock)
    read_at = clock.now
    load(cache)
    # When the key rotates right after that read, and the instance signs 60.5 s later
    manager.versions = NEW
    clock.now = read_at + 60.5
    # Then its 60 s cache has run out: it reloads and signs with the new key
    assert cache.get(SECRET, max_age=60) == NEW
    assert manager.loads == 2
