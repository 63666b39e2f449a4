"""Deciding whom to block: protection, already-blocked, the per-event cap, expiry, escalation."""

from __future__ import annotations

import ipaddress

from functions.shared.blocks import Block, ProtectedNetworks
from functions.shared.settings import settings_from_environment
from functions.waf_responder.decide import block_duration, decide
from functions.waf_responder.offenders import Offender

NOW = 1_800_000_000
NOTHING_PROTECTED = ProtectedNetworks(admin=(), never_block=())


def _offender(ip: str, requests: int) -> Offender:
    return Offender(ipaddress.ip_network(ip), requests=requests, last_seen=NOW - 10)


def _previous(ip: str, *, offences: int, blocked_until: int, event_id: str = "old") -> Block:
    return Block(
        network=ipaddress.ip_network(ip),
        reason="earlier",
        alarm="a",
        source="auto",
        first_seen=NOW - 86_400,
        last_seen=NOW - 86_400,
        blocked_until=blocked_until,
        offences=offences,
        event_id=event_id,
    )


def test_cap_keeps_the_highest_offenders_and_reports_the_rest() -> None:
    """Protects against one alarm blocking the world: only the top N, the rest skipped."""
    settings = settings_from_environment({"MAX_NEW_BLOCKS_PER_EVENT": "2"})
    offenders = [_offender(f"203.0.113.{i}", requests=i) for i in range(1, 6)]
    decision = decide(
        offenders,
        alarm="a",
        reason="r",
        event_id="e",
        known={},
        protected=NOTHING_PROTECTED,
        now=NOW,
        settings=settings,
    )
    assert [b.ip for b in decision.to_block] == ["203.0.113.5/32", "203.0.113.4/32"]
    assert [s.ip for s in decision.skipped] == [
        "203.0.113.3/32",
        "203.0.113.2/32",
        "203.0.113.1/32",
    ]
    assert all("cap of 2" in s.why for s in decision.skipped)


def test_protected_addresses_are_skipped_even_when_they_are_the_worst() -> None:
    protected = ProtectedNetworks(admin=(ipaddress.ip_network("203.0.113.0/24"),), never_block=())
    decision = decide(
        [_offender("203.0.113.1", 10**6), _offender("198.51.100.1", 10)],
        alarm="a",
        reason="r",
        event_id="e",
        known={},
        protected=protected,
        now=NOW,
        settings=settings_from_environment({}),
    )
    assert [b.ip for b in decision.to_block] == ["198.51.100.1/32"]
    assert decision.skipped[0].why == "on the admin allowlist"


def test_already_blocked_address_is_not_blocked_again() -> None:
    """Protects expiry: a second alarm does not silently extend a live block."""
    live = _previous("203.0.113.1/32", offences=1, blocked_until=NOW + 60)
    decision = decide(
        [_offender("203.0.113.1", 50)],
        alarm="b",
        reason="r",
        event_id="new",
        known={live.ip: live},
        protected=NOTHING_PROTECTED,
        now=NOW,
        settings=settings_from_environment({}),
    )
    assert decision.to_block == []
    assert decision.skipped[0].why == "already blocked (by a)"


def test_a_retried_event_reports_its_own_blocks_as_blocked() -> None:
    """Protects the message after a retry: the first attempt's blocks are still 'blocked'."""
    mine = _previous("203.0.113.1/32", offences=1, blocked_until=NOW + 60, event_id="e")
    decision = decide(
        [_offender("203.0.113.1", 50)],
        alarm="a",
        reason="r",
        event_id="e",
        known={mine.ip: mine},
        protected=NOTHING_PROTECTED,
        now=NOW,
        settings=settings_from_environment({}),
    )
    assert decision.to_block == [mine]


def test_repeat_offender_gets_a_longer_block_up_to_the_cap() -> None:
    """Protects escalation: 4h, then 8h, 16h ... never past the configured maximum."""
    settings = settings_from_environment({"BLOCK_MAX_EXPIRY_SECONDS": str(24 * 3600)})
    assert [block_duration("a", n, settings) // 3600 for n in (1, 2, 3, 4, 9)] == [4, 8, 16, 24, 24]
    expired = _previous("203.0.113.1/32", offences=2, blocked_until=NOW - 60)
    decision = decide(
        [_offender("203.0.113.1", 50)],
        alarm="a",
        reason="r",
        event_id="e",
        known={expired.ip: expired},
        protected=NOTHING_PROTECTED,
        now=NOW,
        settings=settings,
    )
    (block,) = decision.to_block
    assert (block.offences, block.blocked_until - NOW) == (3, 16 * 3600)
    assert block.first_seen == expired.first_seen


def test_expiry_is_configurable_per_alarm() -> None:
    settings = settings_from_environment({"BLOCK_EXPIRY_BY_ALARM": "short=600,long=7200"})
    assert block_duration("short", 1, settings) == 600
    assert block_duration("long", 1, settings) == 7200
    assert block_duration("other", 1, settings) == 4 * 3600
