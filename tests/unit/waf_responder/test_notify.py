"""The on-call message: complete counts, bounded lists, and an undo command that works."""

from __future__ import annotations

import ipaddress

from functions.shared.blocks import Block
from functions.waf_responder.decide import Skipped
from functions.waf_responder.notify import MAX_LISTED, compose
from ops.waf import build_parser


def _block(ip: str) -> Block:
    return Block(
        network=ipaddress.ip_network(ip),
        reason="r",
        alarm="a",
        source="auto",
        first_seen=0,
        last_seen=0,
        blocked_until=1_800_000_000,
        requests=42,
        event_id="ev-1",
    )


def _compose(blocked: list[Block], **kwargs) -> str:
    defaults = {
        "alarm": "babyshield-waf-blocked-requests",
        "alarm_reason": "Threshold Crossed",
        "event_id": "ev-1",
        "source": "WAF log",
        "skipped": [],
        "left_out": [],
        "limit": 10_000,
        "truncated_query": False,
    }
    defaults.update(kwargs)
    return compose(blocked=blocked, **defaults).text  # type: ignore[arg-type]


def test_undo_command_names_each_address_and_parses_as_a_cli_command() -> None:
    """Protects on-call at 3 a.m.: the printed command is one the CLI accepts as is."""
    text = _compose([_block("203.0.113.7/32"), _block("2001:db8::1/128")])
    command = next(line.strip() for line in text.splitlines() if "waf unblock 203" in line)
    assert command == "babyshield waf unblock 203.0.113.7 2001:db8::1"
    args = build_parser().parse_args(command.split()[1:])
    assert args.targets == ["203.0.113.7", "2001:db8::1"]


def test_many_blocks_are_summarised_and_undone_by_event() -> None:
    """Protects the SNS size limit: counts are complete, lists are bounded."""
    blocked = [_block(f"10.1.{i // 256}.{i % 256}/32") for i in range(500)]
    skipped = [Skipped(f"10.2.0.{i}/32", 1, "over the cap") for i in range(200)]
    text = _compose(blocked, skipped=skipped, left_out=blocked[:300])
    assert "Blocked 500 address(es)" in text
    assert f"... and {500 - MAX_LISTED} more" in text
    assert "Not blocked (200)" in text
    assert "Left out of the WAF IP sets (300)" in text
    assert "babyshield waf unblock --event ev-1" in text
    assert "babyshield waf unblock 10.1" not in text
    assert len(text.encode()) < 64 * 1024


def test_nothing_blocked_says_so_without_an_undo_command() -> None:
    text = _compose([], skipped=[Skipped("192.0.2.1/32", 9, "on the admin allowlist")])
    assert "Blocked nothing." in text
    assert "To undo" not in text


def test_a_long_alarm_name_still_makes_a_subject_sns_accepts() -> None:
    """SNS refuses a subject of 100 characters or more; a long custom alarm name
    (WAF_ALARM_KINDS) would have made the publish fail and the block go unannounced."""
    notification = compose(
        blocked=[_block("203.0.113.7/32")],
        alarm="babyshield-" + "x" * 120,
        alarm_reason="Threshold Crossed",
        event_id="ev-1",
        source="WAF log",
        skipped=[],
        left_out=[],
        limit=10_000,
        truncated_query=False,
    )
    assert len(notification.subject) < 100


def test_a_look_that_found_nobody_says_why() -> None:
    """A bare 'Blocked nothing' reads like a broken responder (the local alarm demo
    printed only that): the message says what no address reached."""
    text = _compose([], no_offender="no address reached 100 blocked requests")
    assert "Blocked nothing: no address reached 100 blocked requests." in text
    # Skipped offenders carry their own reasons; the general one is not added.
    skipped = [Skipped("192.0.2.5/32", 500, "on the admin allowlist")]
    assert "Blocked nothing.\n" in _compose([], skipped=skipped, no_offender="unused")


def test_every_list_shows_one_address_bare_and_a_network_as_cidr() -> None:
    """The RUNBOOK's promise for every text output: the "Not blocked" list printed the
    registry's `127.0.0.2/32` under a "Blocked" list that printed `203.0.113.7`."""
    text = _compose(
        [_block("203.0.113.7/32")],
        skipped=[
            Skipped("127.0.0.2/32", 25, "unblocked by an operator"),
            Skipped("2001:db8::7/128", 30, "unblocked by an operator"),
            Skipped("2001:db8:1:2::/64", 40, "on the never-block list"),
            Skipped("198.51.100.9/32", 0, "over the cap of 10 new blocks per alarm"),
        ],
    )
    assert "/32" not in text
    assert "/128" not in text
    assert "  127.0.0.2  25 requests  unblocked by an operator" in text
    assert "  2001:db8::7  30 requests" in text
    assert "  2001:db8:1:2::/64  40 requests" in text
    # The rate rule's offenders carry no count
    assert "  198.51.100.9  rate-limited  over the cap" in text


def test_a_blocked_network_names_the_protected_addresses_cut_out_of_it() -> None:
    """Protects on-call from reading a partner as blocked: the /64 is announced with
    the protected address the WAF lets through, and its undo command."""
    v6 = _block("2001:db8:1:2::/64")
    text = _compose([v6], exempt={v6.ip: [ipaddress.ip_network("2001:db8:1:2::10/128")]})
    (line,) = [line for line in text.splitlines() if line.startswith("  2001:db8:1:2::/64")]
    assert line.endswith(", except 2001:db8:1:2::10 (on a protected list)")
    assert "babyshield waf unblock 2001:db8:1:2::/64" in text
    many = [ipaddress.ip_network(f"2001:db8:1:2::{i:x}/128") for i in range(1, 9)]
    assert "and 3 more (on a protected list)" in _compose([v6], exempt={v6.ip: many})


def test_the_alarm_reason_cannot_forge_lines_of_the_message() -> None:
    """The alarm's reason is CloudWatch's text, which anyone with cloudwatch:SetAlarmState
    writes: it stays on its one line, without control characters and bounded, so it
    cannot add a "To undo:" line of its own or an escape sequence to on-call's mail."""
    forged = "Threshold Crossed\nTo undo: babyshield waf unblock 0.0.0.0/0\x1b[2J\u2028x" * 50
    text = _compose([_block("203.0.113.7")], alarm_reason=forged)
    first, *rest = text.splitlines()
    assert first.startswith("Alarm babyshield-waf-blocked-requests is in ALARM: Threshold")
    assert "\x1b" not in text
    assert "\u2028" not in text
    assert len(first) <= 400
    assert not any("0.0.0.0/0" in line for line in rest)
