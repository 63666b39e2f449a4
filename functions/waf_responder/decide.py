"""Which offenders to block, for how long, and which to leave alone and why.

Pure logic over the offenders, the registry's current entries and the protected
lists: no AWS call happens here, so every rule is tested on plain values.

Evidence is answered once. An operator's unblock holds: the registry keeps a
released row (blocks.unblock), and an address is blocked again only on evidence
newer than its release. A block that ran out answered the evidence it was made
for: the sweep's look again at an alarm still in ALARM reads the same window, so
an address whose block ended (its expiry, or the shorter one an operator set) is
blocked again, as a repeat offence, only on evidence newer than that end. Log
records carry their time, so those seen up to the release or the end no longer
count and the newer ones must reach the threshold by themselves (offenders.py
counts them apart while it reads them, against the clearing times read just
before: `clearing_times`). The rate rule's keys carry none: after a release they
count again only once the alarm has left ALARM since, or one offender window after
it; after a block ran out they are new (the rule counts only requests that pass
the auto-block rules), except for the retry of the event that made it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from functions.shared.blocks import Block, ProtectedNetworks, enforceable_blocks, plan_ip_set
from functions.shared.settings import IPNetwork, Settings, canonical_network
from functions.waf_responder.offenders import ClearedAt, Offender, earliest_known


@dataclass(frozen=True)
class Skipped:
    ip: str
    requests: int
    why: str


@dataclass
class Decision:
    to_block: list[Block] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def block_duration(alarm: str, offences: int, settings: Settings) -> int:
    """Base expiry for the alarm, multiplied per repeat offence, never past the cap."""
    base = settings.block_expiry_by_alarm.get(alarm, settings.block_expiry_seconds)
    escalated = base * settings.block_escalation_factor ** max(0, offences - 1)
    return int(min(escalated, max(base, settings.block_max_expiry_seconds)))


def _covering_blocks(offender: Offender, live: Sequence[Block]) -> list[Block]:
    return [
        block
        for block in live
        if block.version == offender.network.version and offender.network.subnet_of(block.network)  # type: ignore[arg-type]
    ]


def _left_out(live: Sequence[Block], settings: Settings, protected: ProtectedNetworks) -> set[str]:
    """The live blocks the IP sets do not hold (in whole or in part), planned as the
    sync plans them (blocks.sync_ip_sets: protected addresses cut out of every block
    first, then the same plan over what is left): the WAF does not enforce them.

    A block inside a network the set keeps is kept by the plan (it needs no entry),
    so a piece left out lies outside every kept entry: each live block holding it
    (its own block, cut around a protected address or not, and any wider one) has
    addresses the WAF does not refuse."""
    enforceable, shielded = enforceable_blocks(live, protected)
    left_out = {b.ip for b in shielded}
    for version in (4, 6):
        for piece in plan_ip_set(enforceable, version, settings.ipset_max_addresses).left_out:
            left_out |= {block.ip for block in live if _inside(piece.network, block.network)}
    return left_out


def _utc(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _canonical(offenders: Iterable[Offender]) -> list[Offender]:
    """Offenders under one spelling per network (an IPv4-mapped address is its IPv4),
    two spellings of one client merged into one offender."""
    merged: dict[IPNetwork, Offender] = {}
    for offender in offenders:
        network = canonical_network(offender.network)
        seen = merged.get(network)
        merged[network] = (
            replace(offender, network=network)
            if seen is None
            else replace(
                seen,
                requests=seen.requests + offender.requests,
                last_seen=max(seen.last_seen, offender.last_seen),
                first_seen=earliest_known(seen.first_seen, offender.first_seen),
                country=seen.country or offender.country,
                after_cleared=_merged_after(seen.after_cleared, offender.after_cleared),
            )
        )
    return list(merged.values())


def _merged_after(
    one: tuple[int, int] | None, other: tuple[int, int] | None
) -> tuple[int, int] | None:
    if one is not None and other is not None and one[0] == other[0]:
        return (one[0], one[1] + other[1])
    return one or other


def _inside(network: IPNetwork, outer: IPNetwork) -> bool:
    if network.version != outer.version:
        return False
    return network.subnet_of(outer)  # type: ignore[arg-type]


def _cleared_at(block: Block, now: float) -> int | None:
    """When what was seen of the block's network stopped counting against it: its
    release, or its end once it has run out; None while it is live."""
    if block.released_at is not None:
        return block.released_at
    return None if block.is_live(now) else block.blocked_until


@dataclass(frozen=True)
class _Clearings:
    """The rows that cleared their network's evidence by `now` (released, or run out;
    only the released ones with `releases_only`), by network: the rows covering an
    offender are found with one lookup per prefix length in use, however many hosts
    an `unblock --event` released or an attack's blocks left run out."""

    by_network: dict[IPNetwork, Block]
    prefixes: dict[int, list[int]]
    now: float

    @classmethod
    def of(cls, blocks: Iterable[Block], now: float, *, releases_only: bool = False) -> _Clearings:
        by_network = {
            b.network: b for b in blocks if b.released or (not releases_only and not b.is_live(now))
        }
        prefixes: dict[int, set[int]] = {4: set(), 6: set()}
        for network in by_network:
            prefixes[network.version].add(network.prefixlen)
        return cls(by_network, {v: sorted(p) for v, p in prefixes.items()}, now)

    def time_of(self, block: Block) -> int:
        return _cleared_at(block, self.now) or 0

    def latest(self, network: IPNetwork) -> Block | None:
        """The row covering `network` (its own, or a wider one's) that cleared it last."""
        covering = [
            row
            for prefixlen in self.prefixes[network.version]
            if prefixlen <= network.prefixlen
            and (row := self.by_network.get(network.supernet(new_prefix=prefixlen))) is not None
        ]
        return max(covering, key=self.time_of) if covering else None


def clearing_times(rows: Iterable[Block], now: float) -> ClearedAt:
    """When each address's evidence was last cleared by `now` (the covering release or
    run-out block that cleared it last), for counting apart the evidence newer than
    that while the records are read."""
    clearings = _Clearings.of(rows, now)

    def cleared_at(network: IPNetwork) -> int | None:
        latest = clearings.latest(canonical_network(network))
        return None if latest is None else clearings.time_of(latest)

    return cleared_at


def _why_held(
    offender: Offender,
    own_row: Block | None,
    clearings: _Clearings,
    releases: _Clearings,
    *,
    event_id: str,
    timed_evidence: bool,
    alarm_since: int | None,
    now: int,
    window_seconds: int,
    threshold: int,
) -> str | None:
    """Why the offender's evidence makes no offence now, if it makes none: it is what
    an operator cleared, or what a block that has run out was made for. `own_row`: the
    registry's row of the offender's network; `clearings`: the rows released or run
    out, `releases` only the released ones."""
    if timed_evidence and offender.last_seen:
        latest = clearings.latest(offender.network)
        if latest is None:
            return None
        cleared_at = _cleared_at(latest, now) or 0
        # Only records newer than the release or the block's end count, and they must
        # make an offender by themselves: what was cleared or served is not added.
        seen = offender.requests_after(cleared_at)
        if seen >= threshold:
            return None
        since = f"{seen} seen since, under the threshold of {threshold}"
        if latest.released:
            return f"unblocked by an operator at {_utc(cleared_at)}; {since}"
        if latest.event_id == event_id:
            return f"blocked by this alarm event until {_utc(cleared_at)}; {since}"
        return f"blocked until {_utc(cleared_at)} (by {latest.alarm}); {since}"
    # No time on the evidence: it may be exactly what the operator cleared.
    release = releases.latest(offender.network)
    if release is not None:
        released_at = release.released_at or 0
        # The alarm left ALARM and fired again since: this is a new look.
        fired_again = alarm_since is not None and alarm_since > released_at
        if not fired_again and now < released_at + window_seconds:
            return (
                f"unblocked by an operator at {_utc(released_at)}; held until the alarm "
                f"fires again or {window_seconds // 60} minutes pass"
            )
    if (
        own_row is not None
        and own_row.event_id == event_id
        and not own_row.released
        and not own_row.is_live(now)
    ):
        # This event's own block that has already run out: a retry arriving that late
        # (a short per-alarm expiry) is looking at what the block was for, and blocking
        # again would punish it twice, escalated.
        return (
            f"blocked by this alarm event until {_utc(own_row.blocked_until)}; nothing seen since"
        )
    return None


def decide(
    offenders: Sequence[Offender],
    *,
    alarm: str,
    reason: str,
    event_id: str,
    known: Mapping[str, Block],
    protected: ProtectedNetworks,
    now: int,
    settings: Settings,
    alarm_since: int | None = None,
    timed_evidence: bool = True,
    threshold: int = 1,
) -> Decision:
    """Highest offenders first: skip the protected, the already blocked, the released
    and those whose block ran out on this evidence, cap the rest.

    An offender touching a protected list is never blocked anew (the policy for new
    blocks), but this event's own live block of it from an earlier attempt is
    reported blocked unless the lists hold all of it: the sync keeps the rest of its
    network in the IP sets (blocks.enforceable_blocks).

    A live block made by this same event counts as blocked again rather than
    skipped, so a retried invocation reports what the first attempt did. A block
    that has run out, this event's or any other's, is not made again on the evidence
    it served: only evidence newer than its end is a new (repeat) offence.
    `timed_evidence`: each offender's `last_seen` is when it was last seen (log
    records), not the time of the look (rate-rule keys). `alarm_since`: when the
    alarm entered its current ALARM state, None when unknown (taken as before any
    release).
    `threshold`: how much evidence makes an offender; after a release or a block's
    end, the records newer than it must reach it by themselves
    (`Offender.after_cleared`, counted against `clearing_times`).
    """
    decision = Decision()
    live = [b for b in known.values() if b.is_live(now)]
    # The cap holds for the event, retries included: blocks an earlier attempt of this
    # event made count against it before any new one.
    cap_left = settings.max_new_blocks_per_event - sum(1 for b in live if b.event_id == event_id)
    left_out = _left_out(live, settings, protected)
    clearings = _Clearings.of(known.values(), now)
    releases = _Clearings.of(known.values(), now, releases_only=True)
    ordered = sorted(
        _canonical(offenders), key=lambda o: (-o.requests, -o.last_seen, str(o.network))
    )
    for offender in ordered:
        ip = str(offender.network)
        coverings = _covering_blocks(offender, live)
        covering = next((b for b in coverings if b.event_id == event_id), None)
        why_protected = protected.why_protected(offender.network)
        if why_protected and (covering is None or not protected.unprotected_part(offender.network)):
            # Never a new block on a protected list, not even one that only touches it.
            decision.skipped.append(Skipped(ip, offender.requests, f"on the {why_protected}"))
            continue
        # Past here an offender touching a list has this event's own block from an
        # earlier attempt: the sync cuts only the protected addresses out of it, the WAF
        # refuses the rest, so it is announced below as blocked (undo command included).
        enforced = [b for b in coverings if b.event_id != event_id and b.ip not in left_out]
        if covering is None and enforced:
            decision.skipped.append(
                Skipped(ip, offender.requests, f"already blocked (by {enforced[0].alarm})")
            )
            continue
        if covering is not None:
            # This event's own block from an earlier attempt: reported as blocked
            # again, never as over the cap it already counts against.
            decision.to_block.append(covering)
            continue
        # Blocked, but left out of a full IP set (ranked by the evidence it was blocked
        # on): evidence newer than that blocks it again, ranked by it, as the same
        # offence. The evidence it was blocked on changes nothing. Untimed evidence
        # (the rate rule's keys) is never newer: the rule refuses a limited client
        # while it is limited, and taking it back in would leave another out, which
        # the next recheck would take back in, each turn told to on-call.
        unenforced = bool(coverings)
        if unenforced:
            newest = max(b.last_seen for b in coverings)
            # An operator's block is never replaced by an automatic one.
            manual = any(b.source == "manual" for b in coverings)
            if manual or not timed_evidence or offender.last_seen <= newest:
                decision.skipped.append(
                    Skipped(
                        ip,
                        offender.requests,
                        f"already blocked (by {coverings[0].alarm}), waiting for room "
                        "in the full IP set",
                    )
                )
                continue
        why_held = _why_held(
            offender,
            known.get(ip),
            clearings,
            releases,
            event_id=event_id,
            timed_evidence=timed_evidence,
            alarm_since=alarm_since,
            now=now,
            window_seconds=settings.offender_window_seconds,
            threshold=threshold,
        )
        if why_held is not None:
            decision.skipped.append(Skipped(ip, offender.requests, why_held))
            continue
        if cap_left <= 0:
            decision.skipped.append(
                Skipped(
                    ip,
                    offender.requests,
                    f"over the cap of {settings.max_new_blocks_per_event} new blocks per alarm",
                )
            )
            continue
        cap_left -= 1
        previous = known.get(ip)
        if previous is not None and previous.released:
            previous = None  # the operator cleared it: no earlier offence
        if previous is None:
            offences = 1
        elif unenforced and previous.is_live(now):
            offences = previous.offences  # the same offence, still going on
        else:
            offences = previous.offences + 1
        decision.to_block.append(
            Block(
                network=offender.network,
                reason=reason,
                alarm=alarm,
                source="auto",
                # Since when it offends: the earliest evidence of its first offence.
                first_seen=previous.first_seen if previous else offender.first_seen or now,
                last_seen=offender.last_seen or now,
                blocked_until=max(
                    now + block_duration(alarm, offences, settings),
                    previous.blocked_until if unenforced and previous else 0,
                ),
                offences=offences,
                requests=offender.requests,
                event_id=event_id,
            )
        )
    return decision
