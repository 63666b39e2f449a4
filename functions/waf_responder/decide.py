"""Which offenders to block, for how long, and which to leave alone and why.

Pure logic over the offenders, the registry's current entries and the protected
lists: no AWS call happens here, so every rule is tested on plain values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from functions.shared.blocks import Block, ProtectedNetworks
from functions.shared.settings import Settings
from functions.waf_responder.offenders import Offender


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


def _covering_block(offender: Offender, live: Sequence[Block]) -> Block | None:
    for block in live:
        if block.version == offender.network.version and offender.network.subnet_of(
            block.network  # type: ignore[arg-type]
        ):
            return block
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
) -> Decision:
    """Highest offenders first: skip the protected and the already blocked, cap the rest.

    A live block made by this same event counts as blocked again rather than
    skipped, so a retried invocation reports what the first attempt did.
    """
    decision = Decision()
    live = [b for b in known.values() if b.is_live(now)]
    ordered = sorted(offenders, key=lambda o: (-o.requests, -o.last_seen, str(o.network)))
    for offender in ordered:
        ip = str(offender.network)
        why_protected = protected.why_protected(offender.network)
        if why_protected:
            decision.skipped.append(Skipped(ip, offender.requests, f"on the {why_protected}"))
            continue
        covering = _covering_block(offender, live)
        if covering is not None and covering.event_id != event_id:
            decision.skipped.append(
                Skipped(ip, offender.requests, f"already blocked (by {covering.alarm})")
            )
            continue
        if len(decision.to_block) >= settings.max_new_blocks_per_event:
            decision.skipped.append(
                Skipped(
                    ip,
                    offender.requests,
                    f"over the cap of {settings.max_new_blocks_per_event} new blocks per alarm",
                )
            )
            continue
        if covering is not None:
            decision.to_block.append(covering)
            continue
        previous = known.get(ip)
        offences = previous.offences + 1 if previous else 1
        decision.to_block.append(
            Block(
                network=offender.network,
                reason=reason,
                alarm=alarm,
                source="auto",
                first_seen=previous.first_seen if previous else now,
                last_seen=offender.last_seen or now,
                blocked_until=now + block_duration(alarm, offences, settings),
                offences=offences,
                requests=offender.requests,
                event_id=event_id,
            )
        )
    return decision
