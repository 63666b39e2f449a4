"""Counting offenders from log records: what counts, what does not, and the threshold."""

from __future__ import annotations

import json

from functions.shared import names
from functions.waf_responder.offenders import (
    aggregate_failed_sign_ins,
    aggregate_waf_records,
)
from tests.support.waf import waf_record


def test_only_block_records_not_from_the_auto_block_rule_count() -> None:
    """Protects against self-feeding blocks and against blocking allowed traffic."""
    records = (
        [waf_record("203.0.113.1")] * 3
        + [waf_record("203.0.113.2", action="ALLOW")] * 3
        + [waf_record("203.0.113.3", rule=names.AUTO_BLOCK_RULE_V4)] * 3
        + [waf_record("2001:db8::3", rule=names.AUTO_BLOCK_RULE_V6)] * 3
    )
    offenders, seen = aggregate_waf_records(records, threshold=1)
    assert [str(o.network) for o in offenders] == ["203.0.113.1/32"]
    assert seen == 12


def test_threshold_and_order_highest_first_with_last_seen() -> None:
    records = [waf_record("203.0.113.1", at_ms=5_000)] * 2 + [
        waf_record("203.0.113.2", at_ms=9_000)
    ] * 5
    records.append(waf_record("203.0.113.9"))
    offenders, _ = aggregate_waf_records([json.dumps(r) for r in records], threshold=2)
    assert [(str(o.network), o.requests, o.last_seen) for o in offenders] == [
        ("203.0.113.2/32", 5, 9),
        ("203.0.113.1/32", 2, 5),
    ]


def test_spellings_of_one_ipv6_address_count_together() -> None:
    """Protects the count: WAF may write an address in any valid form."""
    records = [waf_record("2001:db8::1"), waf_record("2001:DB8:0:0::1")]
    offenders, _ = aggregate_waf_records(records, threshold=2)
    assert [(str(o.network), o.requests) for o in offenders] == [("2001:db8::1/128", 2)]


def test_garbage_records_are_skipped_not_fatal() -> None:
    """Protects the responder from one bad log line: it is ignored, the rest counts."""
    records = ["not json", "[]", json.dumps({"action": "BLOCK"}), json.dumps(waf_record("nope"))]
    records.append(json.dumps(waf_record("203.0.113.1")))
    offenders, seen = aggregate_waf_records(records, threshold=1)
    assert [str(o.network) for o in offenders] == ["203.0.113.1/32"]
    assert seen == 5


def test_failed_sign_ins_count_only_the_failure_event() -> None:
    line = {
        "auth_event": names.AUTH_EVENT_SIGN_IN_FAILED,
        "reason": names.SIGN_IN_WRONG_PASSWORD,
        "source_ip": "198.51.100.4",
    }
    other = {"auth_event": "sign_in_succeeded", "source_ip": "198.51.100.5"}
    lines = [(json.dumps(line), 7_000)] * 3 + [(json.dumps(other), 7_000)] * 3
    offenders, _ = aggregate_failed_sign_ins(lines, threshold=3)
    assert [(str(o.network), o.requests, o.last_seen) for o in offenders] == [
        ("198.51.100.4/32", 3, 7)
    ]


def test_failed_sign_ins_count_only_what_is_evidence_against_the_address() -> None:
    """A refusal of an account that someone else's guesses locked comes from its
    owner as often as from the attacker: counted, it would block the owner."""

    def failures(ip: str, reason: str | None, n: int) -> list[tuple[str, int]]:
        line = {"auth_event": names.AUTH_EVENT_SIGN_IN_FAILED, "source_ip": ip}
        if reason is not None:
            line["reason"] = reason
        return [(json.dumps(line), 7_000)] * n

    lines = (
        failures("198.51.100.1", names.SIGN_IN_WRONG_PASSWORD, 2)
        + failures("198.51.100.1", names.SIGN_IN_UNKNOWN_USER, 1)
        + failures("198.51.100.2", names.SIGN_IN_SOURCE_LOCKED, 3)
        + failures("198.51.100.3", names.SIGN_IN_ACCOUNT_LOCKED, 3)
        + failures("198.51.100.4", None, 3)
    )
    offenders, _ = aggregate_failed_sign_ins(lines, threshold=3)
    assert sorted(str(o.network) for o in offenders) == ["198.51.100.1/32", "198.51.100.2/32"]


def test_a_zone_id_or_an_ipv4_mapped_spelling_counts_as_the_plain_address() -> None:
    """One registry key per host, the one a manual unblock can name: a target with a
    zone id is refused, and the protected lists are checked on the IPv4 address."""
    records = [
        waf_record("2001:db8::7%eth0"),
        waf_record("2001:db8::7"),
        waf_record("::ffff:203.0.113.7"),
        waf_record("203.0.113.7"),
    ]
    offenders, _ = aggregate_waf_records(records, threshold=2)
    assert sorted((str(o.network), o.requests) for o in offenders) == [
        ("2001:db8::7/128", 2),
        ("203.0.113.7/32", 2),
    ]


def test_records_newer_than_a_release_are_counted_apart() -> None:
    """After an operator's unblock only newer evidence may block the address again:
    each record is weighed against the release covering its address, as it is read."""
    import ipaddress

    released_at = {ipaddress.ip_network("203.0.113.1/32"): 10}
    records = [waf_record("203.0.113.1", at_ms=5_000)] * 6 + [
        waf_record("203.0.113.1", at_ms=12_000)
    ] * 2
    records += [waf_record("::ffff:203.0.113.1", at_ms=13_000)]
    records += [waf_record("203.0.113.2", at_ms=5_000)] * 3
    offenders, _ = aggregate_waf_records(records, threshold=1, cleared_at=released_at.get)
    assert [(str(o.network), o.requests, o.after_cleared) for o in offenders] == [
        ("203.0.113.1/32", 9, (10, 3)),
        ("203.0.113.2/32", 3, None),
    ]

    line = {
        "auth_event": names.AUTH_EVENT_SIGN_IN_FAILED,
        "reason": names.SIGN_IN_WRONG_PASSWORD,
        "source_ip": "203.0.113.1",
    }
    # Release times are whole seconds: a record of the release's own second may precede it.
    lines = [(json.dumps(line), 9_000), (json.dumps(line), 10_999), (json.dumps(line), 11_000)]
    (offender,), _ = aggregate_failed_sign_ins(lines, threshold=1, cleared_at=released_at.get)
    assert offender.after_cleared == (10, 1)


def test_ipv6_addresses_count_per_network_of_the_prefix_asked_for() -> None:
    records = [waf_record(f"2001:db8:0:1::{n}") for n in range(1, 4)]
    records += [waf_record("2001:db8:0:2::1"), waf_record("::ffff:203.0.113.1")]
    offenders, _ = aggregate_waf_records(records, threshold=1, ipv6_prefix=64)
    assert [(str(o.network), o.requests) for o in offenders] == [
        ("2001:db8:0:1::/64", 3),
        ("2001:db8:0:2::/64", 1),
        ("203.0.113.1/32", 1),
    ]


def test_an_offender_spans_its_earliest_to_its_latest_evidence() -> None:
    """On-call reads since when an address offends: its first record, not its last."""
    records = [
        waf_record("203.0.113.7", at_ms=9_000),
        waf_record("203.0.113.7", at_ms=4_000),
        waf_record("2001:db8::1", at_ms=6_000),
        waf_record("2001:db8::2", at_ms=3_000),
    ]
    offenders, _ = aggregate_waf_records(records, threshold=1, ipv6_prefix=64)
    assert sorted((str(o.network), o.first_seen, o.last_seen) for o in offenders) == [
        ("2001:db8::/64", 3, 6),
        ("203.0.113.7/32", 4, 9),
    ]
