"""/admin/blocks against a slow, contended WAF: the IP-set sync stops retrying in time.

The API function has 29 s (API Gateway's limit). A block is made in the registry
first, then synced to the IP sets, then audited and answered. If the sync's retries
ran past the function's timeout, the caller would get a 504 and audit_log would never
name a block the registry holds. The sync is bounded by the request's remaining time
instead: what it cannot finish is answered pending (202), audited, and left to the
sweep.

Time here is a manual clock: each refused UpdateIPSet and each backoff moves it by
what a slow WAF would take, so the test reads how long the request would have run.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.shared import names
from ops.apigw import LocalLambdaContext
from tests.integration.identity.conftest import ADMIN_IP
from tests.support.api import call_api
from tests.support.clock import ManualClock
from tests.support.waf import create_resources

# How long a slow, contended WAF takes to refuse one UpdateIPSet.
REFUSAL_SECONDS = 4.0
START = 1_000.0


@pytest.fixture
def admin(world, monkeypatch):
    create_resources(monkeypatch)
    admin_id = world.create_user("root@example.com", role="admin")
    return {"id": admin_id, "headers": world.admin_headers(admin_id)}


@pytest.fixture
def slow_contended_waf(monkeypatch) -> dict[str, Any]:
    """Every UpdateIPSet takes REFUSAL_SECONDS and is refused as conflicting; every
    backoff waits its longest. Returns the clock and the number of updates tried."""
    from functions.shared import blocks

    clock = ManualClock(START)
    seen: dict[str, Any] = {"clock": clock, "updates": 0}

    def refused(*args: object, **kwargs: object) -> None:
        seen["updates"] += 1
        clock.now += REFUSAL_SECONDS
        raise ClientError(
            {"Error": {"Code": "WAFOptimisticLockException", "Message": "changed"}},
            "UpdateIPSet",
        )

    def backoff(attempt: int) -> None:
        clock.now += blocks._backoff_ceiling(attempt)

    monkeypatch.setattr(blocks, "_monotonic", clock)
    monkeypatch.setattr(blocks, "_put_ip_set", refused)
    monkeypatch.setattr(blocks, "_backoff", backoff)
    return seen


def _call(method: str, path: str, headers, *, seconds_left: float, body: Any = None):
    return call_api(
        method,
        path,
        headers=headers,
        json_body=body,
        source_ip=ADMIN_IP,
        context=LocalLambdaContext(timeout_seconds=seconds_left),
    )


def _waf_audit(world) -> list[tuple[str, str | None, str]]:
    return [
        (row[1], row[4].get("waf_ip_sets"), row[4].get("targets"))
        for row in world.audit_rows()
        if row[1].startswith("waf_")
    ]


def test_a_block_the_waf_keeps_refusing_is_answered_pending_inside_the_functions_time(
    world, admin, slow_contended_waf
):
    from functions.api.routes.admin_blocks import ANSWER_RESERVE_SECONDS

    # When an admin blocks an address, with the function's full 29 s ahead
    response = _call(
        "POST",
        "/admin/blocks",
        admin["headers"],
        seconds_left=29,
        body={"targets": ["203.0.113.7"], "reason": "scanner"},
    )

    # Then the sync gave up in time to audit and answer: a slow WAF's refusals and
    # the waits between them took less than the function has, less what the answer needs
    elapsed = slow_contended_waf["clock"]() - START
    assert elapsed <= 29 - ANSWER_RESERVE_SECONDS, elapsed
    # having tried more than once, as long as another attempt could still end in time
    assert slow_contended_waf["updates"] >= 3
    assert response.status == 202, response.body
    answer = response.json()
    assert answer["pending"] is True
    assert "within 5 minutes" in answer["message"]
    # And the change is audited, as pending
    assert _waf_audit(world) == [("waf_block", "pending", "203.0.113.7/32")]


def test_an_unblock_the_waf_keeps_refusing_is_answered_pending_inside_the_functions_time(
    world, admin, slow_contended_waf
):
    from functions.shared import blocks

    blocks.block(["203.0.113.8"], reason="scanner", duration_seconds=3600, actor="seed")
    start = slow_contended_waf["clock"]()

    response = _call("DELETE", "/admin/blocks/203.0.113.8", admin["headers"], seconds_left=29)

    assert slow_contended_waf["clock"]() - start <= 26
    assert response.status == 202, response.body
    assert response.json()["pending"] is True
    assert _waf_audit(world) == [("waf_unblock", "pending", "203.0.113.8/32")]


def test_a_request_with_no_time_left_for_the_sync_leaves_it_to_the_sweep(world, admin, monkeypatch):
    """A request that reaches the sync with less time than one WAF call may take does
    not start one: the block is made, audited and answered pending at once."""
    from functions.shared import blocks
    from functions.waf_responder.sweep import sweep

    updates: list[object] = []
    real_put = blocks._put_ip_set

    def counted(*args: Any, **kwargs: Any) -> None:
        updates.append(args)
        real_put(*args, **kwargs)

    monkeypatch.setattr(blocks, "_put_ip_set", counted)

    # Given 4 s left: 1 s after the answer's reserve, under one call's 5 s of timeouts
    response = _call(
        "POST",
        "/admin/blocks",
        admin["headers"],
        seconds_left=4,
        body={"targets": ["203.0.113.9"], "reason": "scanner"},
    )

    assert response.status == 202, response.body
    assert response.json()["pending"] is True
    assert updates == []
    assert _waf_audit(world) == [("waf_block", "pending", "203.0.113.9/32")]
    # And the sweep, which has its own time, applies it
    assert sweep()["restored"] == ["203.0.113.9/32"]
    assert len(updates) == 1


def test_the_responder_without_a_request_deadline_still_tries_every_attempt(
    world, admin, slow_contended_waf
):
    """Only an API request is bounded this way: the sweep and the responder keep
    their full retry budget (their functions have minutes, not 29 s)."""
    from functions.shared import blocks

    with pytest.raises(blocks.IpSetSyncFailed):
        blocks.sync_ip_sets(changed={4})
    assert slow_contended_waf["updates"] == blocks.MAX_SYNC_ATTEMPTS


def test_the_sync_error_names_the_time_and_the_sweep(world, admin, slow_contended_waf):
    from functions.shared import blocks
    from functions.shared.aws_clients import REQUEST

    with blocks.request_budget(REQUEST, time_left=12), pytest.raises(blocks.IpSetSyncFailed) as err:
        blocks.sync_ip_sets(changed={4})
    assert slow_contended_waf["clock"]() - START <= 12
    message = str(err.value)
    assert "in the time this request has" in message
    assert "refused as conflicting or throttled" in message
    assert f"within {blocks.SWEEP_PERIOD_MINUTES} minutes" in message
    assert names.AUTO_BLOCK_IPSET_V4 not in message
