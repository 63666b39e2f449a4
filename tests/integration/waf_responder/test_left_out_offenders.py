"""Past the IP set's limit the most recent blocks are kept and the rest stay live in
the registry, outside the WAF (blocks.plan_ip_set). An address left out so that
keeps attacking used to be skipped as "already blocked" on every later look, its
rank frozen at the evidence it was first blocked on: while newer one-off offenders
held the set, the one still attacking was let through until its block expired, and
on-call read that it was blocked. New evidence now blocks it again, ranked by that
evidence, as the same offence.

The real responder against the moto server, with an IP set limit of 2.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.stub import Stubber

from functions.shared import names
from functions.waf_responder.events import alarm_state_change_event, scheduled_sweep_event
from tests.integration.waf_responder.conftest import limited
from tests.support.waf import (
    WafResources,
    ip_set_addresses,
    oncall_messages,
    put_waf_records,
)

Invoke = Callable[[dict[str, Any]], dict[str, Any]]
A = "203.0.113.10"


@pytest.fixture
def a_left_out(waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch) -> int:
    """A blocked first, then B and C, which filled the set and left A out; returns
    the time (ms) of the looks' "now"."""
    from functions.shared.settings import get_settings

    monkeypatch.setenv("IPSET_MAX_ADDRESSES", "2")
    get_settings.cache_clear()
    now_ms = int(time.time()) * 1000
    put_waf_records({A: 6}, at_ms=now_ms - 600_000)
    invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))
    put_waf_records({"198.51.100.1": 6, "198.51.100.3": 6}, at_ms=now_ms - 300_000)
    second = invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))
    assert second["left_out"] == [f"{A}/32"]
    return now_ms


def test_a_left_out_offender_that_attacks_again_is_let_back_in(
    a_left_out: int, waf: WafResources, invoke: Invoke
):
    # When A attacks again, now the most recent offender
    put_waf_records({A: 30}, at_ms=a_left_out - 5_000)
    third = invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))

    # Then the WAF refuses A again, and on-call is told it was blocked
    assert f"{A}/32" in ip_set_addresses(waf, 4), third["skipped"]
    assert A in third["blocked"] or f"{A}/32" in third["blocked"]
    # as the same offence: its block is not escalated for being left out
    from functions.shared.blocks import list_blocks

    (block,) = [b for b in list_blocks() if b.ip == f"{A}/32"]
    assert block.offences == 1


def test_the_evidence_it_was_blocked_on_does_not_block_it_again(
    a_left_out: int, waf: WafResources, invoke: Invoke
):
    """A look whose window still holds the old records must not churn the set."""
    # When the alarm is looked at again with no new record of A
    third = invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))

    # Then A stays out, and the reason says it is waiting for room
    assert f"{A}/32" not in ip_set_addresses(waf, 4)
    (why,) = [s["why"] for s in third["skipped"] if s["ip"] == f"{A}/32"]
    assert "waiting for room in the full IP set" in why


def test_a_block_the_sync_leaves_out_is_not_taken_for_enforced_because_of_a_protected_one(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
):
    """The sync (blocks.sync_ip_sets) drops the live blocks that touch a protected
    list before it plans the IP sets; decide must plan the same way. Counting a
    protected block, which can join its neighbours into one CIDR (198.51.100.0/30
    below), it saw room the sync does not have: an offender the sync left out was
    skipped as "already blocked" while the WAF let it through."""
    from functions.shared import blocks
    from functions.shared.settings import get_settings
    from functions.waf_responder.events import alarm_state_change_event

    monkeypatch.setenv("IPSET_MAX_ADDRESSES", "1")
    get_settings.cache_clear()
    now_ms = int(time.time()) * 1000
    a, p, b, c = (f"198.51.100.{n}" for n in range(4))
    # Given four offenders blocked together, the most recent first, one CIDR for all
    for offset, ip in enumerate((a, p, b, c), start=1):
        put_waf_records({ip: 6}, at_ms=now_ms - offset * 60_000)
    invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))
    assert ip_set_addresses(waf, 4) == ["198.51.100.0/30"]
    # and P then put on the never-block list: the sync leaves P out, and without it
    # A, B and C need two CIDRs, so only A stays at the WAF
    monkeypatch.setenv("NEVER_BLOCK_CIDRS", f"{p}/32")
    get_settings.cache_clear()
    blocks.sync_ip_sets()
    assert ip_set_addresses(waf, 4) == [f"{a}/32"]

    # When B, left out, attacks again, now the most recent offender
    put_waf_records({b: 30}, at_ms=now_ms - 5_000)
    result = invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))

    # Then the WAF refuses B again (as test_left_out_offenders expects of a left-out block)
    assert f"{b}/32" in ip_set_addresses(waf, 4), result["skipped"]


def test_a_block_inside_a_kept_network_is_not_reported_left_out_of_a_full_ip_set(
    waf: WafResources, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the IP set limit the sync keeps the longest prefix of the priority order
    that fits (blocks.plan_ip_set); a later block wholly inside a network that prefix
    keeps needs no entry and the WAF refuses it, so it is kept too, not "left out".
    Only the blocks the WAF does not enforce are reported left out, and the network
    holding such a block is not taken for unenforced by the next look (decide): an
    address of an operator's enforced range is "already blocked", not "waiting for
    room in the full IP set"."""
    from functions.shared import blocks
    from functions.shared.settings import get_settings

    monkeypatch.setenv("IPSET_MAX_ADDRESSES", "2")
    get_settings.cache_clear()
    now_ms = int(time.time()) * 1000
    inside = "198.51.100.7"
    # Given the responder blocked one address, and an operator then blocked its whole
    # /24 and another /24: the set holds the two networks, full
    put_waf_records({inside: 6}, at_ms=now_ms - 600_000)
    invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))
    blocks.block(
        ["198.51.100.0/24", "192.0.2.0/24"],
        reason="whole range",
        duration_seconds=3600,
        actor="oncall",
    )
    assert ip_set_addresses(waf, 4) == ["192.0.2.0/24", "198.51.100.0/24"]
    oncall_messages(waf)

    # When a new offender arrives that does not fit
    put_waf_records({"203.0.113.9": 6}, at_ms=now_ms - 60_000)
    result = invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))

    # Then the WAF still refuses the first address (inside the kept /24)...
    assert "198.51.100.0/24" in ip_set_addresses(waf, 4)
    # ...so only the new offender is reported left out
    text = oncall_messages(waf)[0]["Message"]
    assert result["left_out"] == ["203.0.113.9/32"], text
    assert "Left out of the WAF IP sets (1)" in text, text

    # And when another address of the operator's enforced /24 attacks, the next look
    # calls it blocked by the operator, not waiting for room in the full set
    put_waf_records({"198.51.100.50": 6}, at_ms=now_ms - 30_000)
    later = invoke(alarm_state_change_event(names.ALARM_WAF_BLOCKED))
    (why,) = [s["why"] for s in later["skipped"] if s["ip"] == "198.51.100.50/32"]
    assert "waiting for room" not in why, why
    assert why == "already blocked (by manual)", why


def test_rate_limited_clients_past_the_set_limit_do_not_take_turns_in_it(
    waf: WafResources, invoke: Invoke, rate_rule: Stubber, monkeypatch: pytest.MonkeyPatch
):
    """The rate rule's keys say who is limited now, with no time: each recheck used to
    count a left-out client as new evidence, block it again over the others, and leave
    another out, so more limited clients than the set holds took turns in it and
    on-call heard of each turn every five minutes. The rate rule refuses them while
    they are limited whichever are in the set, so a left-out one waits for room."""
    from functions.shared.settings import get_settings
    from tests.support.waf import alarm_in_state

    monkeypatch.setenv("IPSET_MAX_ADDRESSES", "2")
    get_settings.cache_clear()
    clients = ("203.0.113.61/32", "203.0.113.71/32", "203.0.113.81/32")
    # Given the rate alarm in ALARM with three limited clients and room for two
    alarm_in_state(names.ALARM_WAF_RATE, "ALARM")
    limited(rate_rule, *clients)
    first = invoke(alarm_state_change_event(names.ALARM_WAF_RATE))
    assert len(first["left_out"]) == 1
    held = ip_set_addresses(waf, 4)
    oncall_messages(waf)

    # When the sweep rechecks the alarm twice, the same three still limited
    for _ in range(2):
        limited(rate_rule, *clients)
        swept = invoke(scheduled_sweep_event())
        # Then nothing changes, and on-call hears nothing
        assert swept["rechecked"][0]["status"] == "unchanged", swept
        assert ip_set_addresses(waf, 4) == held
        assert oncall_messages(waf) == []
    rate_rule.assert_no_pending_responses()
