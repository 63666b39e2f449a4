"""Per-key rate limits as a hostile or unlucky client meets them: many callers at
once, the minute's edges, a 429's headers and log lines, limits changed or chained
by rotation, a failing DynamoDB. The API handler runs in-process against PostgreSQL
and the moto server over HTTP; the limiter's clock is set by each test, so no test
depends on where in the wall-clock minute it runs."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from functions.api.middleware.security_headers import SECURITY_HEADERS
from functions.shared.identity import rate_limit
from tests.integration.identity.conftest import ADMIN_IP, IdentityWorld
from tests.support.api import ApiResponse, call_api
from tests.support.aws_faults import FAIL, PASS, AwsFaults, faulty_aws_endpoint
from tests.support.clock import ManualClock, pin_limiter_clock
from tests.support.logs import emf_metrics, raw_log_text


def recalls(key: str) -> ApiResponse:
    return call_api("GET", "/recalls", headers={"X-API-Key": key})


def key_id(key: str) -> str:
    return key.split("_")[1]


@pytest.fixture
def api_clock(monkeypatch) -> ManualClock:
    """The clock every limiter the API builds reads, set by the test."""
    return pin_limiter_clock(monkeypatch, 1_700_000_040.0 + 10)  # 10 s into a window


@pytest.fixture
def pause_clock(monkeypatch) -> ManualClock:
    """The clock the limiter's pause after a DynamoDB failure reads, set by the test."""
    clock = ManualClock(1_000.0)
    monkeypatch.setattr(rate_limit.pause, "clock", clock)
    return clock


@pytest.fixture
def faulty_aws(world, monkeypatch) -> Iterator[AwsFaults]:
    with faulty_aws_endpoint(monkeypatch) as faults:
        yield faults


def _rate_limit_update(target: str, body: bytes) -> bool:
    return target.endswith(".UpdateItem") and b"apikey#" in body


# --- concurrency ------------------------------------------------------------------------


def test_many_simultaneous_callers_get_exactly_the_limit_and_the_rest_429(world, api_clock):
    # Given a key limited to 12 a minute and 8 callers sending 24 requests at once
    owner = world.create_user("partner@example.com")
    key = world.create_key(owner, limit=12)
    barrier = threading.Barrier(8)
    statuses: list[int] = []
    lock = threading.Lock()

    def caller() -> None:
        barrier.wait()
        for _ in range(3):
            status = recalls(key).status
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly the limit was served, every other answer a 429, never a 5xx
    assert sorted(set(statuses)) == [200, 429], statuses
    assert statuses.count(200) == 12
    assert statuses.count(429) == 12


# --- window boundaries ------------------------------------------------------------------


def test_a_burst_across_the_minute_gets_at_most_twice_the_limit(world, api_clock):
    owner = world.create_user("partner@example.com")
    key = world.create_key(owner, limit=3)
    # The last second of one window, then the first of the next
    api_clock.now = 1_700_000_040.0 + 59.5
    before = [recalls(key).status for _ in range(4)]
    api_clock.now += 1
    after = [recalls(key).status for _ in range(4)]
    assert before == [200, 200, 200, 429]
    assert after == [200, 200, 200, 429]


def test_a_client_that_waits_its_retry_after_is_served(world, api_clock):
    owner = world.create_user("partner@example.com")
    key = world.create_key(owner, limit=1)
    for index, offset in enumerate((0.0, 0.999, 30.5, 59.0, 59.999)):
        # A fresh window each round, `offset` seconds into it
        api_clock.now = 1_700_000_040.0 + 600 * (index + 1) + offset
        assert recalls(key).status == 200
        refused = recalls(key)
        assert refused.status == 429
        wait = int(refused.header("Retry-After") or "0")
        assert 1 <= wait <= 60
        # Not a second too early: waiting exactly Retry-After lands in the next window
        api_clock.now += wait
        assert recalls(key).status == 200, f"{offset=} {wait=}"


# --- the 429 answer -------------------------------------------------------------------


def test_a_429_has_retry_after_and_security_headers_and_never_the_key(world, api_clock, caplog):
    owner = world.create_user("partner@example.com")
    key = world.create_key(owner, limit=1)
    assert recalls(key).status == 200
    refused = recalls(key)
    assert refused.status == 429
    assert refused.header("Retry-After") == "50"
    for name, value in SECURITY_HEADERS.items():
        assert refused.header(name) == value, name
    assert refused.json()["error"]["code"] == "too_many_requests"
    secret = key.split("_", 2)[2]
    assert secret not in refused.body
    assert secret not in str(refused.headers)
    assert secret not in raw_log_text(caplog)
    assert key_id(key) in raw_log_text(caplog)  # the refusal is audited by key id


def test_a_head_request_over_the_limit_is_429_too(world, api_clock):
    owner = world.create_user("partner@example.com")
    key = world.create_key(owner, limit=1)
    assert call_api("HEAD", "/recalls", headers={"X-API-Key": key}).status == 200
    refused = call_api("HEAD", "/recalls", headers={"X-API-Key": key})
    assert refused.status == 429
    assert refused.header("Retry-After") == "50"


# --- limits set by hand or changed while counting --------------------------------------


def test_the_largest_limit_the_admin_api_grants_counts(world, api_clock):
    admin_id = world.create_user("root@example.com", role="admin")
    headers = world.admin_headers(admin_id)
    partner = world.create_user("partner@example.com")
    created = call_api(
        "POST",
        "/admin/api-keys",
        headers=headers,
        json_body={
            "owner_id": str(partner),
            "scopes": ["recalls:read"],
            "rate_limit_per_minute": 100_000,
        },
        source_ip=ADMIN_IP,
    )
    assert created.status == 201, created.body
    assert [recalls(created.json()["api_key"]).status for _ in range(3)] == [200] * 3
    too_big = call_api(
        "POST",
        "/admin/api-keys",
        headers=headers,
        json_body={
            "owner_id": str(partner),
            "scopes": ["recalls:read"],
            "rate_limit_per_minute": 2**63,
        },
        source_ip=ADMIN_IP,
    )
    assert too_big.status == 422


def test_a_limit_changed_while_counting_applies_at_once(world: IdentityWorld, api_clock):
    owner = world.create_user("partner@example.com")
    key = world.create_key(owner, limit=5)
    assert [recalls(key).status for _ in range(3)] == [200] * 3
    # Lowered below what the window already spent: refused at once
    world.execute("UPDATE api_keys SET rate_limit_per_minute = 2 WHERE key_id = %s", (key_id(key),))
    assert recalls(key).status == 429
    # Raised: the rest of the new limit is served in the same window
    world.execute("UPDATE api_keys SET rate_limit_per_minute = 6 WHERE key_id = %s", (key_id(key),))
    assert [recalls(key).status for _ in range(4)] == [200, 200, 200, 429]


# --- the rotation chain ----------------------------------------------------------------


def _rotate(world: IdentityWorld, old: str, owner: uuid.UUID, *, limit: int) -> str:
    """A successor of `old` with a limit of its own (the admin API copies the old one)."""
    new = world.create_key(owner, limit=limit)
    world.execute(
        "UPDATE api_keys SET rotated_from = %s WHERE key_id = %s", (key_id(old), key_id(new))
    )
    return new


def test_a_revoked_successor_no_longer_binds_the_old_keys_limit(world, api_clock):
    owner = world.create_user("partner@example.com")
    old = world.create_key(owner, limit=4)
    new = _rotate(world, old, owner, limit=1)
    world.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = %s", (key_id(new),))
    assert [recalls(old).status for _ in range(5)] == [200] * 4 + [429]


def test_a_successor_keeps_counting_with_its_revoked_predecessor(world, api_clock):
    # Revoking the old key mid-window gives the successor no fresh budget
    owner = world.create_user("partner@example.com")
    old = world.create_key(owner, limit=3)
    new = _rotate(world, old, owner, limit=3)
    assert [recalls(old).status for _ in range(2)] == [200, 200]
    world.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = %s", (key_id(old),))
    assert recalls(old).status == 401
    assert [recalls(new).status for _ in range(2)] == [200, 429]


def test_an_expired_predecessors_lower_limit_no_longer_binds(world, api_clock):
    owner = world.create_user("partner@example.com")
    old = world.create_key(owner, limit=1, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    new = _rotate(world, old, owner, limit=3)
    assert [recalls(new).status for _ in range(4)] == [200, 200, 200, 429]


# --- DynamoDB failing ----------------------------------------------------------------


def test_a_failing_rate_limit_table_lets_keys_through_counted_never_a_500(
    world, api_clock, pause_clock, faulty_aws, capsys, caplog
):
    owner = world.create_user("partner@example.com")
    key = world.create_key(owner, limit=1)
    faulty_aws.rule = lambda target, body: FAIL if _rate_limit_update(target, body) else PASS
    started = time.monotonic()
    statuses = [recalls(key).status for _ in range(3)]
    assert statuses == [200, 200, 200]
    assert time.monotonic() - started < 15
    assert faulty_aws.disturbed(FAIL)
    assert emf_metrics(capsys.readouterr().out).get("RateLimiterUnavailable") == 3
    assert key.split("_", 2)[2] not in raw_log_text(caplog)
    # A wrong key is still refused, and the table's return restores the limit
    assert recalls(key[:-2] + "zz").status == 401
    faulty_aws.rule = lambda target, body: PASS
    pause_clock.now += rate_limit.PAUSE_AFTER_FAILURE_SECONDS
    assert [recalls(key).status for _ in range(2)] == [200, 429]


def test_after_a_failure_the_limiter_leaves_dynamodb_alone_for_a_while(
    world, api_clock, pause_clock, faulty_aws, capsys
):
    """While DynamoDB fails or stalls, one keyed request per instance and pause waits
    on it, not every one: the rest go straight through, counted as unavailable."""
    from functions.shared.aws_clients import RATE_LIMIT

    owner = world.create_user("partner@example.com")
    key = world.create_key(owner, limit=1)
    faulty_aws.rule = lambda target, body: FAIL if _rate_limit_update(target, body) else PASS
    assert [recalls(key).status for _ in range(3)] == [200, 200, 200]
    # Only the first request asked DynamoDB (each of its attempts failed)
    assert len(faulty_aws.disturbed(FAIL)) == RATE_LIMIT.max_attempts
    assert emf_metrics(capsys.readouterr().out).get("RateLimiterUnavailable") == 3
    # DynamoDB is back within the pause: the request is still not counted (had it
    # been, the one slot would be spent and the next request below refused)
    faulty_aws.rule = lambda target, body: PASS
    pause_clock.now += rate_limit.PAUSE_AFTER_FAILURE_SECONDS - 1
    assert recalls(key).status == 200
    # After the pause the limit holds again
    pause_clock.now += 1
    assert [recalls(key).status for _ in range(2)] == [200, 429]


def test_the_rate_limit_waits_on_its_own_short_budget(world, api_clock, monkeypatch):
    """It fails open, so all its waiting is latency: not the budget of a call whose
    failure is the request's 503 (REQUEST)."""
    from functions.shared.aws_clients import RATE_LIMIT, REQUEST
    from functions.shared.identity import aws
    from tests.support.aws import record_client_budgets

    owner = world.create_user("partner@example.com")
    key = world.create_key(owner, limit=5)
    budgets = record_client_budgets(monkeypatch, aws)

    assert recalls(key).status == 200
    assert [timeouts for service, timeouts in budgets if service == "dynamodb"] == [RATE_LIMIT]
    assert RATE_LIMIT.worst_case_seconds < REQUEST.worst_case_seconds


def test_an_unreachable_rate_limit_table_lets_keys_through(world, api_clock, monkeypatch):
    import socket

    from functions.shared.identity import reset_caches
    from functions.shared.settings import get_settings

    owner = world.create_user("partner@example.com")
    key = world.create_key(owner, limit=1)
    # A port nothing listens on: connections are refused at once
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    get_settings.cache_clear()
    reset_caches()
    assert [recalls(key).status for _ in range(2)] == [200, 200]


# --- hostile callers ------------------------------------------------------------------


def test_wrong_secrets_for_a_known_key_id_spend_none_of_its_budget(world, api_clock):
    # Key ids are not secret (lists, audit lines): guesses at the secret cost the owner nothing
    owner = world.create_user("partner@example.com")
    key = world.create_key(owner, limit=2)
    forged = key[:20] + ("A" if key[20] != "A" else "B") + key[21:]
    assert {recalls(forged).status for _ in range(5)} == {401}
    assert [recalls(key).status for _ in range(3)] == [200, 200, 429]


def test_an_admin_key_over_its_limit_is_429_on_admin_routes(world: IdentityWorld, api_clock):
    admin_id = world.create_user("root@example.com", role="admin")
    key = world.create_key(admin_id, scopes=("admin", "recalls:read"), limit=1)
    headers = {"X-API-Key": key, "Authorization": f"Bearer {world.token(admin_id, 'admin')}"}
    first = call_api("GET", "/admin/api-keys", headers=headers, source_ip=ADMIN_IP)
    refused = call_api("GET", "/admin/api-keys", headers=headers, source_ip=ADMIN_IP)
    assert first.status == 200, first.body
    assert refused.status == 429
    assert refused.header("Retry-After") == "50"
    for name, value in SECURITY_HEADERS.items():
        assert refused.header(name) == value, name


def test_an_admin_routes_429_is_kept_in_the_audit_log(world: IdentityWorld, api_clock):
    """Every admin-route refusal gets an audit_log row (docs/ARCHITECTURE.md); an admin
    key over its limit was only logged."""
    admin_id = world.create_user("root@example.com", role="admin")
    key = world.create_key(admin_id, scopes=("admin", "recalls:read"), limit=1)
    headers = {"X-API-Key": key, "Authorization": f"Bearer {world.token(admin_id, 'admin')}"}
    assert call_api("GET", "/admin/api-keys", headers=headers, source_ip=ADMIN_IP).status == 200
    refused = call_api("GET", "/admin/api-keys", headers=headers, source_ip=ADMIN_IP)
    assert refused.status == 429
    kept = [row for row in world.audit_rows() if row[4].get("reason") == "over_limit"]
    assert kept, world.audit_rows()
    assert kept[0][4]["key_id"] == key_id(key)
    assert key.split("_", 2)[2] not in str(kept)
