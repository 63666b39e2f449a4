"""The one message on-call gets per alarm: what was blocked, what was not, how to undo it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from functions.shared.blocks import Block, address_text, aws_client, is_unprintable
from functions.shared.observability import logger
from functions.shared.settings import IPNetwork, get_settings
from functions.waf_responder.decide import Skipped

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

# SNS takes 256 KB; listing every one of 10,000 addresses would not fit and
# would not be read. The counts are always complete; the lists are the top.
MAX_LISTED = 50
# Up to this many blocks the undo command names each address; past it, the event.
MAX_ADDRESSES_IN_COMMAND = 20
# Protected addresses named after one blocked network; the rest are counted.
MAX_EXEMPT_LISTED = 5
# The alarm's reason text is shown up to this many characters.
MAX_REASON_SHOWN = 300
# SNS refuses a subject of 100 characters or more ("must be less than 100").
SUBJECT_LIMIT = 99


@dataclass(frozen=True)
class Notification:
    subject: str
    text: str


def _when(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _host_text(block: Block) -> str:
    return address_text(block.network)


def _activity(block: Block) -> str:
    if block.source == "manual":
        return "manual block"
    return _requests(block.requests)


def _requests(count: int) -> str:
    # The rate rule reports who is limited, not how many requests they sent.
    return f"{count} requests" if count else "rate-limited"


def unblock_commands(blocked: Sequence[Block], event_id: str) -> list[str]:
    commands = []
    if 0 < len(blocked) <= MAX_ADDRESSES_IN_COMMAND:
        commands.append("babyshield waf unblock " + " ".join(_host_text(b) for b in blocked))
    if blocked:
        commands.append(f"babyshield waf unblock --event {event_id}")
    return commands


def _one_line(text: str) -> str:
    """CloudWatch's reason text, which whoever may set an alarm's state writes: on one
    line, without characters a mail client or terminal acts on, and bounded."""
    shown = "".join(" " if is_unprintable(c) else c for c in text).strip()
    return shown if len(shown) <= MAX_REASON_SHOWN else shown[: MAX_REASON_SHOWN - 3] + "..."


def _exempt_text(networks: Sequence[IPNetwork]) -> str:
    if not networks:
        return ""
    shown = ", ".join(address_text(n) for n in networks[:MAX_EXEMPT_LISTED])
    more = len(networks) - MAX_EXEMPT_LISTED
    return f", except {shown}{f' and {more} more' if more > 0 else ''} (on a protected list)"


def compose(
    *,
    alarm: str,
    alarm_reason: str,
    event_id: str,
    source: str,
    blocked: Sequence[Block],
    skipped: Sequence[Skipped],
    left_out: Sequence[Block],
    limit: int,
    truncated_query: bool,
    no_offender: str = "",
    exempt: Mapping[str, Sequence[IPNetwork]] | None = None,
) -> Notification:
    """The on-call message. `no_offender`: why no address was found, said when nothing
    was blocked or skipped (so a quiet answer is not taken for a broken responder).
    `exempt`: per blocked network, the protected addresses the sync cuts out of it
    (the WAF refuses the rest of the network)."""
    exempt = exempt or {}
    lines = [
        f"Alarm {alarm} is in ALARM: {_one_line(alarm_reason)}".rstrip(": "),
        f"Offenders from {source}.",
    ]
    if truncated_query:
        lines.append(
            "Not every log record of the window could be read (too many for the query's "
            "pages or its deadline): counts are from the most recent records only."
        )
    lines.append("")
    if blocked:
        lines.append(f"Blocked {len(blocked)} address(es):")
        for b in blocked[:MAX_LISTED]:
            repeat = f", offence #{b.offences}" if b.offences > 1 else ""
            lines.append(
                f"  {_host_text(b)}  {_activity(b)}  until {_when(b.blocked_until)}{repeat}"
                + _exempt_text(exempt.get(b.ip, ()))
            )
        if len(blocked) > MAX_LISTED:
            lines.append(f"  ... and {len(blocked) - MAX_LISTED} more (babyshield waf list)")
    elif no_offender and not skipped:
        lines.append(f"Blocked nothing: {no_offender}.")
    else:
        lines.append("Blocked nothing.")
    if skipped:
        lines += ["", f"Not blocked ({len(skipped)}):"]
        lines += [
            f"  {address_text(s.ip)}  {_requests(s.requests)}  {s.why}"
            for s in skipped[:MAX_LISTED]
        ]
        if len(skipped) > MAX_LISTED:
            lines.append(f"  ... and {len(skipped) - MAX_LISTED} more")
    if left_out:
        lines += [
            "",
            f"Left out of the WAF IP sets ({len(left_out)}): the {limit}-entry limit is reached; "
            "they stay in the registry and enter the set as older blocks expire:",
        ]
        lines += [f"  {_host_text(b)}  {_activity(b)}" for b in left_out[:MAX_LISTED]]
        if len(left_out) > MAX_LISTED:
            lines.append(f"  ... and {len(left_out) - MAX_LISTED} more")
    commands = unblock_commands(blocked, event_id)
    if commands:
        lines += ["", "To undo:"] + [f"  {c}" for c in commands]
    subject = f"[BabyShield] {alarm}: blocked {len(blocked)}, skipped {len(skipped)}"
    if left_out:
        subject += f", {len(left_out)} over limit"
    return Notification(subject=subject[:SUBJECT_LIMIT], text="\n".join(lines) + "\n")


def _sns() -> SNSClient:
    client: SNSClient = aws_client("sns")
    return client


def publish(notification: Notification) -> str | None:
    """Send to the on-call topic; without one (local stack) the message is only logged."""
    topic = get_settings().oncall_topic_arn
    if not topic:
        logger.info(
            "no on-call topic configured; message not sent", extra={"subject": notification.subject}
        )
        return None
    answer = _sns().publish(TopicArn=topic, Subject=notification.subject, Message=notification.text)
    return answer.get("MessageId")
