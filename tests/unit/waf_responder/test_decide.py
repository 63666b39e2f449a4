"""Deciding whom to block: protection, already-blocked, the per-event cap, expiry, escalation."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from functions.shared.blocks import Block, ProtectedNetworks
from functions.shared.settings import settings_from_environment
from functions.waf_responder.decide import Decision, block_duration, clearing_times, decide
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


def test_a_retry_reports_its_own_block_that_touches_a_protected_list_as_blocked() -> None:
    """Protects the message after a retry: a partner address inside this event's /64
    went on the never-block list since the first attempt; the sync cuts only it out
    and the WAF refuses the rest, so the block is reported blocked, not skipped."""
    mine = _previous("2001:db8:1:2::/64", offences=1, blocked_until=NOW + 60, event_id="e")
    partner = ProtectedNetworks(
        admin=(), never_block=(ipaddress.ip_network("2001:db8:1:2::10/128"),)
    )
    decision = decide(
        [_offender("2001:db8:1:2::/64", 50)],
        alarm="a",
        reason="r",
        event_id="e",
        known={mine.ip: mine},
        protected=partner,
        now=NOW,
        settings=settings_from_environment({}),
    )
    assert decision.to_block == [mine]
    assert decision.skipped == []


def test_a_new_offender_touching_a_protected_list_is_not_blocked() -> None:
    """Protects the policy for new blocks: a network holding a protected address is
    never blocked anew, even though the sync would cut the address out; only this
    event's own earlier block of it is reported, and only if the lists do not hold
    all of it."""
    partner = ProtectedNetworks(
        admin=(), never_block=(ipaddress.ip_network("2001:db8:1:2::10/128"),)
    )
    elsewhere = _previous("2001:db8:1:2::/64", offences=1, blocked_until=NOW + 60, event_id="x")
    decision = decide(
        [_offender("2001:db8:1:2::/64", 50)],
        alarm="a",
        reason="r",
        event_id="e",
        known={elsewhere.ip: elsewhere},
        protected=partner,
        now=NOW,
        settings=settings_from_environment({}),
    )
    assert decision.to_block == []
    assert [s.why for s in decision.skipped] == ["on the never-block list"]

    whole = ProtectedNetworks(admin=(), never_block=(ipaddress.ip_network("2001:db8:1::/48"),))
    mine = replace(elsewhere, event_id="e")
    decision = decide(
        [_offender("2001:db8:1:2::/64", 50)],
        alarm="a",
        reason="r",
        event_id="e",
        known={mine.ip: mine},
        protected=whole,
        now=NOW,
        settings=settings_from_environment({}),
    )
    assert decision.to_block == []
    assert [s.why for s in decision.skipped] == ["on the never-block list"]


def test_repeat_offender_gets_a_longer_block_up_to_the_cap() -> None:
    """Protects escalation: 4h, then 8h, 16h ... never past the configured maximum."""
    settings = settings_from_environment({"BLOCK_MAX_EXPIRY_SECONDS": str(24 * 3600)})
    assert [block_duration("a", n, settings) // 3600 for n in (1, 2, 3, 4, 9)] == [4, 8, 16, 24, 24]
    expired = _previous("203.0.113.1/32", offences=2, blocked_until=NOW - 60)
    decision = decide(
        [_came_back("203.0.113.1", 50, block_ended=NOW - 60)],
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


def _came_back(ip: str, requests: int, *, block_ended: int) -> Offender:
    """An offender all of whose evidence is newer than the end of its last block, as
    offenders.py counts it against that end."""
    return replace(_offender(ip, requests), after_cleared=(block_ended, requests))


def test_expiry_is_configurable_per_alarm() -> None:
    settings = settings_from_environment({"BLOCK_EXPIRY_BY_ALARM": "short=600,long=7200"})
    assert block_duration("short", 1, settings) == 600
    assert block_duration("long", 1, settings) == 7200
    assert block_duration("other", 1, settings) == 4 * 3600


def _released(ip: str, *, at: int) -> Block:
    """The row an operator's unblock leaves: offences reset, the release time kept."""
    return replace(
        _previous(ip, offences=1, blocked_until=NOW + 3600),
        offences=0,
        released_at=at,
        released_by="oncall",
    )


def _decide(
    offenders: list[Offender],
    known: list[Block],
    protected: ProtectedNetworks = NOTHING_PROTECTED,
    **kwargs: object,
) -> Decision:
    return decide(
        offenders,
        alarm="a",
        reason="r",
        event_id="recheck",
        known={b.ip: b for b in known},
        protected=protected,
        now=NOW,
        settings=settings_from_environment({}),
        **kwargs,  # type: ignore[arg-type]
    )


def test_an_unblocked_address_is_not_blocked_again_on_what_was_seen_before_the_unblock() -> None:
    """Protects an operator's unblock from the sweep's recheck, which reads the same
    log window as the look that blocked the address."""
    released = _released("203.0.113.1/32", at=NOW - 5)
    seen_before = Offender(ipaddress.ip_network("203.0.113.1/32"), requests=50, last_seen=NOW - 5)

    decision = _decide([seen_before], [released])

    assert decision.to_block == []
    assert decision.skipped[0].why.startswith("unblocked by an operator at ")
    assert decision.skipped[0].why.endswith("; 0 seen since, under the threshold of 1")


def test_an_unblocked_address_seen_again_after_the_unblock_is_a_first_offence() -> None:
    released = _released("203.0.113.1/32", at=NOW - 60)
    seen_after = Offender(
        ipaddress.ip_network("203.0.113.1/32"),
        requests=50,
        last_seen=NOW - 59,
        after_cleared=(NOW - 60, 50),
    )

    (block,) = _decide([seen_after], [released]).to_block

    assert (block.offences, block.released_at, block.first_seen) == (1, None, NOW)


def test_after_an_unblock_only_the_newer_evidence_counts_against_the_threshold() -> None:
    """The records the operator cleared are not added to the newer ones: 12 in the
    window, one of them after the unblock, is one record of evidence, under a threshold
    of 5; five after it are an offender again."""
    released = _released("203.0.113.1/32", at=NOW - 60)

    def offender(after: int) -> Offender:
        return Offender(
            ipaddress.ip_network("203.0.113.1/32"),
            requests=12,
            last_seen=NOW - 1,
            after_cleared=(NOW - 60, after),
        )

    held = _decide([offender(1)], [released], threshold=5)
    assert held.to_block == []
    assert held.skipped[0].why.endswith("; 1 seen since, under the threshold of 5")
    assert [b.ip for b in _decide([offender(5)], [released], threshold=5).to_block] == [
        "203.0.113.1/32"
    ]


def test_a_release_made_while_the_records_were_read_holds() -> None:
    """The records were counted against an older release (or none): how many are
    newer than this one is unknown, so nothing is, until the next look."""
    released = _released("203.0.113.1/32", at=NOW - 10)
    counted_earlier = Offender(
        ipaddress.ip_network("203.0.113.1/32"),
        requests=40,
        last_seen=NOW - 1,
        after_cleared=(NOW - 3600, 40),
    )
    assert _decide([counted_earlier], [released], threshold=5).to_block == []


def test_an_unblocked_network_holds_for_the_addresses_inside_it() -> None:
    released = _released("203.0.113.0/24", at=NOW - 5)
    decision = _decide([_offender("203.0.113.9", 50), _offender("198.51.100.9", 50)], [released])
    assert [b.ip for b in decision.to_block] == ["198.51.100.9/32"]


def test_rate_rule_keys_count_again_only_after_the_alarm_fired_again_or_a_window() -> None:
    """The rate rule's keys carry no time: held while the alarm has stayed in ALARM
    since the unblock, for at most one offender window."""
    window = settings_from_environment({}).offender_window_seconds
    key = Offender(ipaddress.ip_network("203.0.113.1/32"), requests=0, last_seen=NOW)

    def blocked(released_at: int, alarm_since: int | None) -> bool:
        released = _released("203.0.113.1/32", at=released_at)
        decision = _decide([key], [released], alarm_since=alarm_since, timed_evidence=False)
        return bool(decision.to_block)

    # In ALARM since before the unblock (or unknown), inside the window: held
    assert not blocked(NOW - 60, alarm_since=NOW - 3600)
    assert not blocked(NOW - 60, alarm_since=None)
    # The alarm cleared and fired again after the unblock: a new look
    assert blocked(NOW - 60, alarm_since=NOW - 30)
    # One offender window after the unblock: the keys count again
    assert blocked(NOW - window, alarm_since=NOW - 3600)


def test_an_ipv4_mapped_offender_is_its_ipv4_address() -> None:
    """Protects the never-block list and the registry key from a second spelling of
    one client (the WAF log may give either), merged into one offender."""
    protected = ProtectedNetworks(admin=(), never_block=(ipaddress.ip_network("203.0.113.0/24"),))
    mapped = [
        Offender(ipaddress.ip_network("::ffff:203.0.113.7/128"), requests=9, last_seen=NOW),
        Offender(ipaddress.ip_network("::ffff:198.51.100.7/128"), requests=4, last_seen=NOW - 9),
        Offender(ipaddress.ip_network("198.51.100.7/32"), requests=3, last_seen=NOW - 1),
    ]
    decision = _decide(mapped, [], protected)
    (block,) = decision.to_block
    assert (block.ip, block.requests, block.last_seen) == ("198.51.100.7/32", 7, NOW - 1)
    assert [(s.ip, s.why) for s in decision.skipped] == [
        ("203.0.113.7/32", "on the never-block list")
    ]


def test_a_first_offence_runs_from_its_earliest_evidence_to_its_latest() -> None:
    """A block's first_seen was the decision's time, after its last_seen: on-call read
    an address as first seen seconds after it was last seen."""
    offender = replace(_offender("203.0.113.1/32", requests=50), first_seen=NOW - 300)

    (block,) = _decide([offender], []).to_block

    assert (block.first_seen, block.last_seen) == (NOW - 300, NOW - 10)


def test_a_repeat_offence_keeps_when_the_address_first_offended() -> None:
    earlier = _previous("203.0.113.1/32", offences=1, blocked_until=NOW - 3_600)
    offender = replace(
        _came_back("203.0.113.1/32", 50, block_ended=NOW - 3_600), first_seen=NOW - 300
    )

    (block,) = _decide([offender], [earlier]).to_block

    assert (block.first_seen, block.last_seen, block.offences) == (NOW - 86_400, NOW - 10, 2)


def _late_retry(offender: Offender, *, timed_evidence: bool = True) -> Decision:
    """A retry of event `e` arriving after the block `e` made has run out."""
    served = replace(
        _previous("203.0.113.1/32", offences=1, blocked_until=NOW - 60, event_id="e"),
        last_seen=NOW - 900,
    )
    return decide(
        [offender],
        alarm="a",
        reason="r",
        event_id="e",
        known={served.ip: served},
        protected=NOTHING_PROTECTED,
        now=NOW,
        settings=settings_from_environment({}),
        timed_evidence=timed_evidence,
    )


def test_a_late_retry_does_not_block_again_on_the_evidence_its_block_served() -> None:
    """Protects escalation: a retry of the same alarm event that arrives after the
    block it made ran out (a short per-alarm expiry, an hour of retries) would block
    the address again on the same evidence, as a second offence, for twice as long."""
    during_the_block = Offender(
        ipaddress.ip_network("203.0.113.1"), requests=50, last_seen=NOW - 120
    )
    decision = _late_retry(during_the_block)
    assert decision.to_block == []
    (skipped,) = decision.skipped
    assert "blocked by this alarm event until" in skipped.why
    untimed = replace(during_the_block, last_seen=NOW)
    assert _late_retry(untimed, timed_evidence=False).to_block == []


def test_a_late_retry_blocks_a_client_that_came_back_after_its_block() -> None:
    """Evidence newer than the block's end is a return: a new offence, escalated."""
    (block,) = _late_retry(_came_back("203.0.113.1", 50, block_ended=NOW - 60)).to_block
    assert block.offences == 2


def _ran_out(ip: str, *, ended: int, offences: int = 1, event_id: str = "old") -> Block:
    return _previous(ip, offences=offences, blocked_until=ended, event_id=event_id)


def test_a_block_that_ran_out_is_not_made_again_on_the_evidence_it_served() -> None:
    """Protects escalation: the sweep's look again at an alarm still in ALARM (another
    event id) reads the same window as the look that blocked the address. Once its
    block runs out, the records from before it must not block it again at once, as
    a repeat offence for twice as long."""
    expired = _ran_out("203.0.113.1/32", ended=NOW - 60)
    seen_before = replace(
        _offender("203.0.113.1", 50), last_seen=NOW - 700, after_cleared=(NOW - 60, 0)
    )

    decision = _decide([seen_before], [expired], threshold=5)

    assert decision.to_block == []
    (skipped,) = decision.skipped
    assert skipped.why.startswith("blocked until ")
    assert skipped.why.endswith(" (by a); 0 seen since, under the threshold of 5")


def test_after_a_block_ran_out_only_the_newer_evidence_counts_and_escalates() -> None:
    """As after a release: the records newer than the block's end must reach the
    threshold by themselves; when they do, it is a repeat offence, escalated."""
    expired = _ran_out("203.0.113.1/32", ended=NOW - 120, offences=1)

    def offender(after: int) -> Offender:
        return replace(_offender("203.0.113.1", 60), after_cleared=(NOW - 120, after))

    held = _decide([offender(4)], [expired], threshold=5)
    assert held.to_block == []
    assert held.skipped[0].why.endswith("; 4 seen since, under the threshold of 5")

    (block,) = _decide([offender(5)], [expired], threshold=5).to_block
    assert block.offences == 2
    assert block.blocked_until - NOW == 8 * 3600


def test_an_operators_shortened_block_that_ran_out_holds_like_the_responders() -> None:
    """On-call replaced the responder's block with a 10-minute one (`waf block --for
    10m`): once it runs out, the evidence it was for does not block the address again."""
    shortened = replace(
        _ran_out("203.0.113.1/32", ended=NOW - 60), source="manual", alarm="manual", event_id=None
    )
    seen_before = replace(_offender("203.0.113.1", 50), after_cleared=(NOW - 60, 0))
    decision = _decide([seen_before], [shortened])
    assert decision.to_block == []
    assert "(by manual); 0 seen since" in decision.skipped[0].why


def test_a_wider_block_that_ran_out_holds_for_the_addresses_inside_it() -> None:
    expired = _ran_out("203.0.113.0/24", ended=NOW - 60)
    inside = replace(_offender("203.0.113.9", 50), after_cleared=(NOW - 60, 0))
    elsewhere = _offender("198.51.100.9", 50)
    decision = _decide([inside, elsewhere], [expired])
    assert [b.ip for b in decision.to_block] == ["198.51.100.9/32"]


def test_the_latest_clearing_of_an_address_is_the_one_its_evidence_is_weighed_against() -> None:
    """The address's own block ran out an hour ago; its /24 was unblocked a minute
    ago: only what came after the unblock counts."""
    own = _ran_out("203.0.113.1/32", ended=NOW - 3600)
    network = _released("203.0.113.0/24", at=NOW - 60)
    cleared_at = clearing_times([own, network], NOW)
    assert cleared_at(ipaddress.ip_network("203.0.113.1/32")) == NOW - 60
    assert cleared_at(ipaddress.ip_network("198.51.100.1/32")) is None

    counted = replace(_offender("203.0.113.1", 50), after_cleared=(NOW - 60, 0))
    decision = _decide([counted], [own, network])
    assert decision.to_block == []
    assert decision.skipped[0].why.startswith("unblocked by an operator at ")


def test_clearing_times_are_releases_and_the_ends_of_blocks_that_ran_out() -> None:
    live = _previous("203.0.113.1/32", offences=1, blocked_until=NOW + 60)
    expired = _ran_out("203.0.113.2/32", ended=NOW - 60)
    released = _released("2001:db8:1:2::/64", at=NOW - 30)
    cleared_at = clearing_times([live, expired, released], NOW)

    assert cleared_at(ipaddress.ip_network("203.0.113.1/32")) is None
    assert cleared_at(ipaddress.ip_network("203.0.113.2/32")) == NOW - 60
    assert cleared_at(ipaddress.ip_network("2001:db8:1:2::/64")) == NOW - 30
    # An IPv4-mapped spelling is its IPv4 address.
    assert cleared_at(ipaddress.ip_network("::ffff:203.0.113.2/128")) == NOW - 60


def test_rate_rule_keys_after_another_events_block_ran_out_are_a_new_offence() -> None:
    """The rate rule counts only requests the auto-block rules let through: a client it
    limits after its block ran out has come back (untimed evidence, no count apart)."""
    expired = _ran_out("203.0.113.1/32", ended=NOW - 60)
    key = Offender(ipaddress.ip_network("203.0.113.1/32"), requests=0, last_seen=NOW)

    (block,) = _decide([key], [expired], timed_evidence=False).to_block

    assert block.offences == 2
