"""Block planning without AWS: address parsing, CIDR aggregation, the IP set limit."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.shared.blocks import (
    MAX_REASON_LENGTH,
    SWEEP_PERIOD_MINUTES,
    Block,
    InvalidReason,
    InvalidTarget,
    ProtectedNetworks,
    aggregate,
    aggregate_cidrs,
    check_reason,
    cidrs_outside,
    parse_target,
    plan_ip_set,
)
from functions.shared.settings import canonical_network


def _block(cidr: str, *, last_seen: int = 1000, requests: int = 10, source: str = "auto") -> Block:
    return Block(
        network=ipaddress.ip_network(cidr),
        reason="test",
        alarm="a",
        source=source,  # type: ignore[arg-type]
        first_seen=last_seen,
        last_seen=last_seen,
        blocked_until=last_seen + 3600,
        requests=requests,
    )


def _addresses(networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> set[int]:
    return {int(a) for n in networks for a in n}


def test_bare_addresses_become_host_networks() -> None:
    """Protects the IP set format WAF needs: IPv4 as /32, IPv6 as /128."""
    assert str(parse_target("203.0.113.7")) == "203.0.113.7/32"
    assert str(parse_target("2001:DB8::1")) == "2001:db8::1/128"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("203.0.113", "not an IP address or CIDR"),
        ("example.com", "not an IP address or CIDR"),
        ("203.0.113.7/24", "host bits set: the network is 203.0.113.0/24"),
        ("10.0.0.0/4", "host bits set: the network is 0.0.0.0/4"),
        ("10.0.0.0/8", "wider than /16"),
        ("2001:db8::/32", "wider than /48"),
    ],
)
def test_bad_or_too_wide_targets_are_refused_with_a_reason(text: str, message: str) -> None:
    """Protects against typos blocking whole networks: bad syntax, host bits set, or a
    range wider than an auto-block should ever be."""
    with pytest.raises(InvalidTarget, match=message):
        parse_target(text)


def test_adjacent_addresses_aggregate_into_one_cidr() -> None:
    """Protects the 10,000 budget: 203.0.113.0-3 is one /30 entry, not four."""
    nets = [ipaddress.ip_network(f"203.0.113.{i}/32") for i in range(4)]
    assert [str(n) for n in aggregate(nets, 4)] == ["203.0.113.0/30"]


def test_unaligned_runs_are_not_widened() -> None:
    """Protects innocent neighbours: .1-.2 are adjacent but not a CIDR; they stay two."""
    nets = [ipaddress.ip_network("203.0.113.1/32"), ipaddress.ip_network("203.0.113.2/32")]
    assert [str(n) for n in aggregate(nets, 4)] == ["203.0.113.1/32", "203.0.113.2/32"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=300), max_size=60))
def test_aggregation_covers_exactly_the_given_addresses(offsets: list[int]) -> None:
    """Protects the invariant that matters most: the IP set never lists an address
    that was not blocked, and never drops one that was."""
    base = int(ipaddress.IPv4Address("198.51.100.0"))
    nets = [ipaddress.ip_network(ipaddress.IPv4Address(base + o)) for o in offsets]
    out = aggregate(nets, 4)
    assert _addresses(out) == _addresses(nets)
    assert len(out) <= len(set(offsets))


def test_aggregation_keeps_versions_apart() -> None:
    nets = [ipaddress.ip_network("203.0.113.1/32"), ipaddress.ip_network("2001:db8::1/128")]
    assert [str(n) for n in aggregate(nets, 6)] == ["2001:db8::1/128"]


def test_plan_under_the_limit_keeps_everything() -> None:
    blocks = [_block(f"203.0.113.{i}/32") for i in (1, 3, 5)]
    plan = plan_ip_set(blocks, 4, limit=10)
    assert plan.addresses == ["203.0.113.1/32", "203.0.113.3/32", "203.0.113.5/32"]
    assert plan.left_out == []


def test_plan_over_the_limit_keeps_the_most_recent_then_most_active() -> None:
    """Protects the choice past the limit: recent and busy offenders stay blocked,
    and whatever is left out is reported, not silently dropped."""
    old_busy = _block("203.0.113.1/32", last_seen=100, requests=900)
    new_quiet = _block("203.0.113.3/32", last_seen=200, requests=5)
    new_busy = _block("203.0.113.5/32", last_seen=200, requests=50)
    plan = plan_ip_set([old_busy, new_quiet, new_busy], 4, limit=2)
    assert plan.addresses == ["203.0.113.3/32", "203.0.113.5/32"]
    assert plan.left_out == [old_busy]


def test_plan_fits_more_blocks_than_the_limit_when_they_aggregate() -> None:
    """Protects the budget: 12 blocks that aggregate to 3 entries all fit under 3."""
    blocks = [_block(f"203.0.113.{i}/32") for i in range(8)]
    blocks += [_block(f"198.51.100.{i}/32") for i in (0, 1)]
    blocks += [_block(f"192.0.2.{i}/32") for i in (8, 9)]
    plan = plan_ip_set(blocks, 4, limit=3)
    assert plan.addresses == ["192.0.2.8/31", "198.51.100.0/31", "203.0.113.0/29"]
    assert plan.left_out == []


def test_manual_blocks_outrank_automatic_ones_at_the_limit() -> None:
    manual = _block("203.0.113.9/32", last_seen=1, requests=0, source="manual")
    auto = _block("203.0.113.1/32", last_seen=999, requests=999)
    plan = plan_ip_set([auto, manual], 4, limit=1)
    assert plan.addresses == ["203.0.113.9/32"]


def test_a_block_inside_a_kept_network_is_kept_not_left_out() -> None:
    """Protects what "left out" means: a block past the fitting prefix that lies inside
    a network the set keeps needs no entry and the WAF refuses it, so it is kept; only
    a block the set does not cover is left out (and reported unenforced)."""
    operator = _block("198.51.100.0/24", source="manual")
    other = _block("192.0.2.0/24", source="manual")
    newest = _block("203.0.113.9/32", last_seen=3000)
    inside = _block("198.51.100.7/32", last_seen=2000)
    plan = plan_ip_set([inside, newest, other, operator], 4, limit=2)
    assert plan.addresses == ["192.0.2.0/24", "198.51.100.0/24"]
    assert plan.left_out == [newest]
    assert inside in plan.kept


def test_a_block_inside_kept_networks_merged_together_is_kept() -> None:
    """Covered by the union of the kept networks (two halves), not by one of them."""
    halves = [_block("198.51.100.0/25", last_seen=9), _block("198.51.100.128/25", last_seen=8)]
    outside = _block("203.0.113.1/32", last_seen=7)
    across = _block("198.51.100.64/26", last_seen=6)
    plan = plan_ip_set([*halves, outside, across], 4, limit=1)
    assert plan.addresses == ["198.51.100.0/24"]
    assert plan.left_out == [outside]


def test_the_unprotected_part_of_a_network_that_touches_a_protected_list() -> None:
    """Protects the line between "touches a list" (the rest stays blocked) and "wholly
    on one" (nothing of it is blocked): the responder and the sync draw it alike."""
    protected = ProtectedNetworks(
        admin=(ipaddress.ip_network("192.0.2.0/28"),),
        never_block=(ipaddress.ip_network("2001:db8:1:2::10/128"),),
    )
    v6 = ipaddress.ip_network("2001:db8:1:2::/64")
    rest = protected.unprotected_part(v6)
    assert sum(piece.num_addresses for piece in rest) == 2**64 - 1
    assert not any(ipaddress.ip_address("2001:db8:1:2::10") in piece for piece in rest)
    assert protected.exempt_inside(v6) == [ipaddress.ip_network("2001:db8:1:2::10/128")]
    assert protected.unprotected_part(ipaddress.ip_network("192.0.2.3/32")) == []
    assert protected.unprotected_part(ipaddress.ip_network("192.0.2.0/24")) == [
        ipaddress.ip_network(cidr)
        for cidr in ("192.0.2.16/28", "192.0.2.32/27", "192.0.2.64/26", "192.0.2.128/25")
    ]
    untouched = ipaddress.ip_network("203.0.113.3/32")
    assert protected.unprotected_part(untouched) == [untouched]
    assert protected.exempt_inside(untouched) == []


def test_protected_networks_name_the_list_that_protects_an_address() -> None:
    protected = ProtectedNetworks(
        admin=(ipaddress.ip_network("192.0.2.0/28"),),
        never_block=(ipaddress.ip_network("2001:db8::/64"),),
    )
    assert protected.why_protected(ipaddress.ip_network("192.0.2.3/32")) == "admin allowlist"
    assert protected.why_protected(ipaddress.ip_network("2001:db8::5/128")) == "never-block list"
    assert protected.why_protected(ipaddress.ip_network("192.0.2.0/24")) == "admin allowlist"
    assert protected.why_protected(ipaddress.ip_network("203.0.113.3/32")) is None


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=(1 << 16) - 1), max_size=40),
    st.sampled_from([4, 6]),
)
def test_cidr_strings_match_the_networks_for_both_versions(
    offsets: list[int], version: int
) -> None:
    """Protects the fast string path the IP sets use: the same CIDRs as `aggregate`,
    spelled as ipaddress spells them (IPv6 compressed)."""
    base = ipaddress.ip_address("198.51.0.0" if version == 4 else "2001:db8::")
    nets = [ipaddress.ip_network(base + o) for o in offsets]
    assert aggregate_cidrs(nets, version) == [str(n) for n in aggregate(nets, version)]


@pytest.mark.parametrize("text", ["fe80::1%eth0", "fe80::1%1", "fe80::%eth0/64", "fe80::1%eth0/64"])
def test_ipv6_zone_ids_are_refused(text: str) -> None:
    """Protects unblock: `fe80::1%eth0` was stored as `fe80::1%eth0/128` while the IP set
    got `fe80::1/128`, so `waf unblock fe80::1` found nothing. A zone means nothing to WAF."""
    with pytest.raises(InvalidTarget, match="IPv6 zone id"):
        parse_target(text)


def test_a_reason_is_kept_stripped() -> None:
    assert check_reason("  credential stuffing \n") == "credential stuffing"
    assert check_reason("x" * MAX_REASON_LENGTH) == "x" * MAX_REASON_LENGTH


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("   ", "give a reason"),
        ("x" * (MAX_REASON_LENGTH + 1), f"at most {MAX_REASON_LENGTH}"),
        ("x" * 100_000, f"at most {MAX_REASON_LENGTH}"),
        ("scan\nADDRESS  fake row", "control characters"),
        ("scan \x1b[31mred\x1b[0m", "control characters"),
        ("scan\tfrom x", "control characters"),
        ("scan \x9b2J", "control characters"),  # the C1 form of ESC [
        ("user \u202egnp.exe", "control characters"),  # right-to-left override
        ("one\u2028two", "control characters"),  # line separator
    ],
)
def test_reasons_a_terminal_would_act_on_are_refused(reason: str, message: str) -> None:
    """Protects `waf list` and the audit trail: a reason is one line of plain text of
    bounded length, whoever writes it (the CLI and the admin API share this check)."""
    with pytest.raises(InvalidReason, match=message):
        check_reason(reason)


def test_the_admin_api_bounds_a_reason_as_the_registry_does() -> None:
    """The API model cannot import the block module at load time; its copy of the
    limit must not drift."""
    from functions.api.admin import blocks as admin_blocks

    assert admin_blocks.MAX_REASON_LENGTH == MAX_REASON_LENGTH
    assert admin_blocks.SWEEP_PERIOD_MINUTES == SWEEP_PERIOD_MINUTES


@pytest.mark.parametrize(
    ("text", "network"),
    [
        ("::ffff:203.0.113.7", "203.0.113.7/32"),
        ("::FFFF:cb00:7107", "203.0.113.7/32"),
        ("::ffff:203.0.113.0/120", "203.0.113.0/24"),
    ],
)
def test_an_ipv4_mapped_target_is_its_ipv4_network(text: str, network: str) -> None:
    """Protects one key per block on every Python (3.13 and 3.11 spell a mapped network
    differently) and the IPv4 checks (protected lists, minimum prefix)."""
    assert str(parse_target(text)) == network


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("::ffff:0.0.0.0/96", "0.0.0.0/0 is wider than /16"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8 is wider than /16"),
        ("::fffe:0:0/95", "covers every IPv4-mapped address"),
        ("::/64", "covers every IPv4-mapped address"),
    ],
)
def test_a_mapped_range_wider_than_the_ipv4_minimum_is_refused(text: str, message: str) -> None:
    """Protects against blocking all of IPv4 through the IPv6 minimum (/48)."""
    with pytest.raises(InvalidTarget, match=message):
        parse_target(text)


def test_canonical_networks_drop_zone_ids_and_leave_other_networks_alone() -> None:
    assert str(canonical_network(ipaddress.ip_network("2001:db8::7%eth0/128"))) == "2001:db8::7/128"
    for plain in ("2001:db8::/64", "203.0.113.0/24", "::fffe:0:0/95"):
        assert canonical_network(ipaddress.ip_network(plain)) == ipaddress.ip_network(plain)


def test_a_mapped_spelling_is_protected_as_its_ipv4_on_either_side() -> None:
    protected = ProtectedNetworks(
        admin=(ipaddress.ip_network("::ffff:192.0.2.0/124"),),
        never_block=(ipaddress.ip_network("203.0.113.0/24"),),
    )
    mapped = ipaddress.ip_network("::ffff:203.0.113.7/128")
    assert protected.why_protected(mapped) == "never-block list"
    assert protected.why_protected(ipaddress.ip_network("192.0.2.3/32")) == "admin allowlist"


def test_plan_keeps_the_longest_fitting_prefix_though_fitting_is_not_monotone() -> None:
    """Protects blocks at the limit: the first five below aggregate to two entries
    (203.0.113.0/30 and .5), though the first three and four need three."""
    blocks = [
        _block(f"203.0.113.{offset}/32", last_seen=100 - rank)
        for rank, offset in enumerate((0, 2, 5, 1, 3, 9))
    ]
    plan = plan_ip_set(blocks, 4, limit=2)
    assert plan.addresses == ["203.0.113.0/30", "203.0.113.5/32"]
    assert [str(b.network) for b in plan.left_out] == ["203.0.113.9/32"]


@pytest.mark.parametrize("version", [4, 6])
def test_the_longest_fitting_prefix_matches_aggregating_every_prefix(version: int) -> None:
    """The incremental cover against the full aggregation of each prefix, on random
    networks dense enough to overlap, nest and merge."""
    import random

    from functions.shared.blocks import _aggregate_ranges, longest_fitting_prefix

    rng = random.Random(version)
    base = ipaddress.ip_network("198.51.100.0/24" if version == 4 else "2001:db8::/120")
    width = base.max_prefixlen
    for _ in range(200):
        networks = []
        for _ in range(rng.randint(1, 24)):
            prefix = rng.randint(width - 5, width)
            offset = rng.randrange(0, 256) >> (width - prefix) << (width - prefix)
            networks.append(ipaddress.ip_network((int(base.network_address) + offset, prefix)))
        limit = rng.randint(1, 8)
        counts = [
            len(_aggregate_ranges(networks[:k], version)[0]) for k in range(1, len(networks) + 1)
        ]
        expected = max((k for k, count in enumerate(counts, start=1) if count <= limit), default=0)
        assert longest_fitting_prefix(networks, version, limit) == expected, (networks, limit)


_BLOCKS_NEAR_ONE_ADDRESS = st.lists(
    st.tuples(st.integers(min_value=0, max_value=255), st.integers(min_value=28, max_value=32)),
    max_size=8,
)


@given(_BLOCKS_NEAR_ONE_ADDRESS, _BLOCKS_NEAR_ONE_ADDRESS)
def test_cidrs_outside_is_the_address_space_difference(
    ours: list[tuple[int, int]], theirs: list[tuple[int, int]]
) -> None:
    """What a sync reports as added and removed: addresses, whatever the aggregation
    (one address leaving a /31 is that address removed, not the /31 removed and a /32
    added)."""
    base = int(ipaddress.IPv4Address("10.0.0.0"))

    def cidrs(blocks: list[tuple[int, int]]) -> list[str]:
        nets = [ipaddress.ip_network((base + o, p), strict=False) for o, p in blocks]
        return aggregate_cidrs(nets, 4)

    def space(texts: list[str]) -> set[int]:
        return _addresses([ipaddress.ip_network(t) for t in texts])

    a, b = cidrs(ours), cidrs(theirs)
    outside = cidrs_outside(a, b, 4)
    assert space(outside) == space(a) - space(b)
    assert outside == aggregate_cidrs([ipaddress.ip_network(c) for c in outside], 4)


def test_cidrs_outside_for_ipv6() -> None:
    assert cidrs_outside(["2001:db8::/63"], ["2001:db8::/64"], 6) == ["2001:db8:0:1::/64"]
    assert cidrs_outside(["2001:db8::/64"], ["2001:db8::/63"], 6) == []
