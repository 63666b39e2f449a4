"""What the per-key limit leaves behind and what it tells on-call, pinned through the
real handler against PostgreSQL and the moto server: the one DynamoDB item a key's
chain counts on per minute (its key, count and expiry), requests no route takes
(a browser's preflight) spending nothing and granting no CORS, and the log lines
of a limiter failing open (docs/RUNBOOK.md, "keyed requests go unlimited")."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from functions.api.middleware.security_headers import SECURITY_HEADERS
from functions.shared import names
from tests.integration.identity.conftest import IdentityWorld
from tests.support.api import ApiResponse, call_api
from tests.support.aws_faults import PASS, AwsFaults, faulty_aws_endpoint, refuse
from tests.support.clock import ManualClock, pin_limiter_clock
from tests.support.identity import client

WINDOW_START = 1_700_000_040  # a whole minute since the epoch
CROSS_ORIGIN = "https://partner-dashboard.example"


@pytest.fixture
def api_clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    """The clock of every limiter the API builds, 10 s into a minute."""
    return pin_limiter_clock(monkeypatch, WINDOW_START + 10.0)


@pytest.fixture
def faulty_aws(world: IdentityWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsFaults]:
    with faulty_aws_endpoint(monkeypatch) as faults:
        yield faults


def recalls(key: str) -> ApiResponse:
    return call_api("GET", "/recalls", headers={"X-API-Key": key})


def key_id(key: str) -> str:
    return key.split("_")[1]


def counter_items() -> dict[str, dict[str, str]]:
    """The per-key counters in the rate-limit table (sign-in lockout shares it), by pk."""
    pages = client("dynamodb").get_paginator("scan").paginate(TableName=names.RATE_LIMIT_TABLE)
    items = [item for page in pages for item in page["Items"]]
    return {
        item[names.RATE_LIMIT_PARTITION_KEY]["S"]: {
            name: next(iter(value.values())) for name, value in item.items()
        }
        for item in items
        if item[names.RATE_LIMIT_PARTITION_KEY]["S"].startswith("apikey#")
    }


def test_a_chain_counts_on_one_item_per_minute_that_expires_after_it(
    world: IdentityWorld, api_clock: ManualClock
):
    # Given a partner's key, rotated to a successor, and a revoked key of theirs
    owner = world.create_user("partner@example.com")
    old = world.create_key(owner, limit=3)
    new = world.create_key(owner, limit=3)
    world.execute(
        "UPDATE api_keys SET rotated_from = %s WHERE key_id = %s", (key_id(old), key_id(new))
    )
    revoked = world.create_key(owner, limit=3)
    world.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = %s", (key_id(revoked),))
    forged = old[:-2] + ("zz" if not old.endswith("zz") else "yy")
    # When both live keys spend the budget, and refused keys try too
    answers = [recalls(old).status, recalls(new).status, recalls(old).status]
    refused = [recalls(forged).status, recalls(revoked).status, recalls(new).status]
    # Then the chain shared one budget and the refused keys wrote nothing
    assert answers == [200, 200, 200]
    assert refused == [401, 401, 429]
    items = counter_items()
    assert list(items) == [f"apikey#{key_id(old)}#{WINDOW_START}"]
    counter = items[f"apikey#{key_id(old)}#{WINDOW_START}"]
    assert counter["hits"] == "3"
    # And the item outlives its minute by one more (TTL deletion never races a count)
    assert int(counter[names.TTL_ATTRIBUTE]) == WINDOW_START + 120
    # When the next minute starts, it counts on an item of its own
    api_clock.now = WINDOW_START + 60.0
    assert recalls(new).status == 200
    assert items.keys() < counter_items().keys()
    assert counter_items()[f"apikey#{key_id(old)}#{WINDOW_START + 60}"]["hits"] == "1"


def test_a_preflight_or_another_unrouted_method_spends_none_of_a_keys_budget(
    world: IdentityWorld, api_clock: ManualClock
):
    # Given a key limited to 2 a minute
    owner = world.create_user("partner@example.com")
    key = world.create_key(owner, limit=2)
    preflight = {
        "Origin": CROSS_ORIGIN,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "x-api-key",
        "X-API-Key": key,
    }
    # When a browser page preflights the key's route and a client posts to it
    unrouted = [call_api("OPTIONS", "/recalls", headers=preflight) for _ in range(3)]
    unrouted += [call_api("POST", "/recalls", headers={"X-API-Key": key}) for _ in range(2)]
    # Then each is a 405 naming what the path takes, grants no cross-origin read,
    # and carries every security header
    for answer in unrouted:
        assert answer.status == 405
        assert answer.header("Allow") == "GET, HEAD"
        assert answer.header("Access-Control-Allow-Origin") is None
        assert answer.header("Access-Control-Allow-Headers") is None
        assert answer.header("Access-Control-Allow-Credentials") is None
        for name, value in SECURITY_HEADERS.items():
            assert answer.header(name) == value, name
    # And the key's whole budget is still there
    assert [recalls(key).status for _ in range(3)] == [200, 200, 429]


def test_a_failing_limiter_names_its_error_once_then_says_it_is_paused(
    world: IdentityWorld,
    api_clock: ManualClock,
    faulty_aws: AwsFaults,
    caplog: pytest.LogCaptureFixture,
):
    # Given a key, and a rate-limit table the API's role may not write
    owner = world.create_user("partner@example.com")
    key = world.create_key(owner, limit=1)
    faulty_aws.rule = lambda target, body: (
        refuse("AccessDeniedException")
        if target.endswith(".UpdateItem") and b"apikey#" in body
        else PASS
    )
    # When the key is used three times
    with caplog.at_level(logging.WARNING):
        assert [recalls(key).status for _ in range(3)] == [200, 200, 200]
    # Then on-call finds one ERROR naming DynamoDB's refusal (the role, not the table
    # or its capacity) and a WARNING for each request let through while paused
    lines = [r for r in caplog.records if r.getMessage().startswith("rate limiter")]
    assert [(r.levelno, r.getMessage()) for r in lines] == [
        (logging.ERROR, "rate limiter unavailable; request allowed"),
        (logging.WARNING, "rate limiter paused after a failure; request allowed"),
        (logging.WARNING, "rate limiter paused after a failure; request allowed"),
    ]
    assert lines[0].exc_info is not None
    assert str(lines[0].exc_info[1]) == "AccessDeniedException"
    assert all(getattr(r, "key_id", None) == key_id(key) for r in lines)
    assert key.split("_", 2)[2] not in "\n".join(r.getMessage() for r in caplog.records)
