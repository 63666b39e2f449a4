"""API keys on GET /recalls: verified against the database, limited per key in DynamoDB."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.api import call_api
from tests.support.logs import json_log_lines


def recalls(api_key: str | None):
    headers = {"X-API-Key": api_key} if api_key is not None else {}
    return call_api("GET", "/recalls", headers=headers)


def test_a_live_key_reads_recalls(world):
    owner = world.create_user("partner@example.com")
    key = world.create_key(owner)
    assert recalls(key).status == 200


def test_anonymous_reads_of_public_recalls_still_work(world):
    assert recalls(None).status == 200


@pytest.mark.parametrize(
    "mangle",
    [
        lambda key: key[:-1] + ("A" if key[-1] != "A" else "B"),  # wrong secret
        lambda key: "bs_" + "0" * 16 + key[19:],  # unknown key id
        lambda key: "garbage",
        lambda key: key.replace("bs_", "sk_"),
    ],
)
def test_wrong_keys_are_401(world, mangle):
    owner = world.create_user("partner@example.com")
    key = world.create_key(owner)
    assert recalls(mangle(key)).status == 401


def test_expired_and_revoked_keys_are_401(world):
    owner = world.create_user("partner@example.com")
    expired = world.create_key(owner, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    revoked = world.create_key(owner)
    world.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = %s", (revoked[3:19],))
    assert recalls(expired).status == 401
    assert recalls(revoked).status == 401


def test_key_without_the_read_scope_is_403(world):
    owner = world.create_user("ops@example.com", role="admin")
    key = world.create_key(owner, scopes=("admin",))
    assert recalls(key).status == 403


def test_over_the_keys_limit_is_429_with_retry_after(world):
    owner = world.create_user("partner@example.com")
    key = world.create_key(owner, limit=3)
    statuses = [recalls(key).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = recalls(key)
    assert 1 <= int(refused.header("Retry-After") or "0") <= 60
    # Another key has its own budget
    assert recalls(world.create_key(owner, limit=3)).status == 200


def test_two_concurrent_callers_with_one_key_cannot_exceed_its_limit(world):
    # Given a key limited to 10 per minute and two callers each sending 10 at once
    owner = world.create_user("partner@example.com")
    key = world.create_key(owner, limit=10)
    barrier = threading.Barrier(2)
    results: list[int] = []
    lock = threading.Lock()

    def caller() -> None:
        barrier.wait()
        for _ in range(10):
            status = recalls(key).status
            with lock:
                results.append(status)

    threads = [threading.Thread(target=caller) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly 10 were served and the rest were 429
    assert results.count(200) == 10
    assert results.count(429) == 10


def test_key_decisions_are_audited_by_key_id_never_by_key(world, caplog):
    owner = world.create_user("partner@example.com")
    key = world.create_key(owner)
    recalls(key)
    recalls(key[:-2] + "zz")
    lines = [line for line in json_log_lines(caplog) if line.get("audit")]
    events = [(line["auth_event"], line.get("key_id")) for line in lines]
    assert ("api_key_succeeded", key[3:19]) in events
    assert ("api_key_failed", key[3:19]) in events
    secret = key[20:]
    assert all(secret not in str(line) for line in json_log_lines(caplog))


def test_rate_limiter_outage_lets_valid_keys_through_and_is_counted(world, monkeypatch, capsys):
    # Given a valid key and a rate-limit table that cannot be reached
    from functions.shared.settings import get_settings

    owner = world.create_user("partner@example.com")
    key = world.create_key(owner, limit=1)
    monkeypatch.setenv("RATE_LIMIT_TABLE", "no-such-table")
    get_settings.cache_clear()
    # Then the key still works (the WAF's per-IP rule stays in front) and the outage is counted
    assert [recalls(key).status for _ in range(3)] == [200, 200, 200]
    assert "RateLimiterUnavailable" in capsys.readouterr().out
    # But a wrong key is still refused
    assert recalls(key[:-2] + "zz").status == 401


def test_before_the_chain_migration_a_key_still_works_and_counts_alone(world, monkeypatch):
    # Given API code newer than the database (a deploy runs sql/011 beside the update)
    from functions.api.identity import store

    missing = store._API_KEY_LOOKUP.replace("auth.api_key_chain", "auth.not_yet_migrated")
    monkeypatch.setattr(store, "_API_KEY_LOOKUP", missing)
    owner = world.create_user("partner@example.com")
    key = world.create_key(owner, limit=2)
    # Then the key is verified and limited as before the chain existed, not a 500
    assert [recalls(key).status for _ in range(3)] == [200, 200, 429]


def test_spellings_of_one_key_share_its_budget_or_are_refused(world):
    """Whitespace around a key is the same key, with the same budget; a key id in
    capitals or a NUL in the key is refused, never a second budget."""
    import time

    owner = world.create_user("partner@example.com")
    key = world.create_key(owner, limit=2)
    key_id = key.split("_")[1]
    assert recalls("bs_" + key_id.upper() + key[19:]).status == 401
    assert recalls(key + "\x00").status == 401
    # Per-key limits count in one-minute windows: start the burst inside one
    remaining = 60 - time.time() % 60
    if remaining < 5:
        time.sleep(remaining + 0.1)
    assert [recalls(spelling).status for spelling in (key, f"  {key}\t", key + "\n")] == [
        200,
        200,
        429,
    ]
