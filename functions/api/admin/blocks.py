"""The WAF auto-block list for an admin: list, block, unblock.

The same operations as `babyshield waf list|block|unblock` and the responder
(functions/shared/blocks.py): the registry is written first and the IP sets are
then synced to it, so a block or unblock here takes effect at the WAF at once.

A change takes effect when the registry holds it (every sync applies it), so that
is when it is audited and answered as made. If the IP sets could not be synced
then, the answer is 202: accepted, applied by the sweep within minutes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

from pydantic import AfterValidator, ConfigDict, Field

from functions.api.admin import require_admin
from functions.api.models import ApiModel, WholeNumber
from functions.shared.caller import Caller
from functions.shared.errors import BadRequest, Conflict, NotFound, ServiceUnavailable

if TYPE_CHECKING:
    from functions.shared.blocks import ChangeResult

T = TypeVar("T")

MAX_TARGETS = 100
# A Lambda answer stops at 6 MB; a listed block is about 300 bytes, and the registry
# can hold more blocks than the IP sets' 10,000 during a large attack.
MAX_LISTED_BLOCKS = 5_000
MIN_BLOCK_SECONDS = 60
MAX_BLOCK_SECONDS = 30 * 24 * 3600
# functions.shared.blocks.MAX_REASON_LENGTH, which this module does not import at
# load time (it brings botocore into every cold start); a test keeps the two equal.
MAX_REASON_LENGTH = 500
# functions.shared.blocks.SWEEP_PERIOD_MINUTES, for the same reason.
SWEEP_PERIOD_MINUTES = 5


def _plain_reason(value: str) -> str:
    """The rule every writer of a block follows (one line, no control characters),
    checked here so the caller gets a 422 naming the field."""
    from functions.shared.blocks import InvalidReason, check_reason

    try:
        return check_reason(value)
    except InvalidReason as exc:
        raise ValueError("reason is not one line of plain text") from exc


Reason = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_REASON_LENGTH,
        description="Why: one line of plain text, no control characters.",
    ),
    AfterValidator(_plain_reason),
]


class BlockView(ApiModel):
    ip: str
    version: int
    reason: str
    alarm: str
    source: str
    first_seen: int = Field(
        description="Since when the address offends (epoch seconds): the earliest evidence "
        "of its first offence, or when it was first blocked by hand."
    )
    last_seen: int = Field(description="Its latest evidence (epoch seconds).")
    blocked_until: int
    offences: int
    requests: int
    event_id: str | None
    actor: str | None


class BlockList(ApiModel):
    blocks: list[BlockView] = Field(
        description=f"Live blocks, soonest expiry first; at most {MAX_LISTED_BLOCKS:,}."
    )
    total: int = Field(description="How many blocks are live.")
    truncated: bool = Field(
        description=f"More than {MAX_LISTED_BLOCKS:,} blocks are live and only those that "
        "expire first are listed; `babyshield waf list` shows every one."
    )


class BlockRequest(ApiModel):
    model_config = ConfigDict(extra="forbid")

    targets: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=64)]],
        Field(min_length=1, max_length=MAX_TARGETS),
    ]
    reason: Reason
    duration_seconds: Annotated[
        int, Field(strict=True, ge=MIN_BLOCK_SECONDS, le=MAX_BLOCK_SECONDS), WholeNumber
    ] = 4 * 3600


class BlockChange(ApiModel):
    changed: list[BlockView]
    not_found: list[str]
    pending: bool = Field(
        default=False,
        description=(
            "The change is made (in the block registry, and audited) but the WAF IP sets "
            f"could not be updated now: the sweep applies it within {SWEEP_PERIOD_MINUTES} "
            "minutes. Repeating the request is not needed."
        ),
    )
    covered_by: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            "Unblocked networks the WAF still refuses: each one -> the wider blocked "
            "networks that contain it. Only unblocking those lets it through."
        ),
    )
    replaced: list[BlockView] = Field(
        default_factory=list,
        description=(
            "For a block: the live blocks it replaced, as they were. A block sets the new "
            "reason and expiry, also an earlier expiry than the one replaced."
        ),
    )
    message: str | None = Field(default=None, description="What `pending` or `covered_by` mean.")


def _change(result: ChangeResult) -> BlockChange:
    # Registry CIDRs in canonical form, never the caller's text.
    covered_by = {ip: list(networks) for ip, networks in result.covered_by.items()}
    notes = []
    if covered_by:
        inside = "; ".join(f"{ip} is inside {', '.join(n)}" for ip, n in covered_by.items())
        notes.append(
            f"The WAF still refuses what was unblocked: {inside}. "
            "Only unblocking that network lets it through."
        )
    if result.pending:
        notes.append(
            "Accepted: the change is made, but the WAF IP sets could not be updated now; "
            f"the sweep applies it within {SWEEP_PERIOD_MINUTES} minutes."
        )
    return BlockChange(
        changed=[BlockView(**block.to_json()) for block in result.changed],
        not_found=list(result.not_found),
        pending=result.pending,
        covered_by=covered_by if result.changed else {},
        replaced=[BlockView(**block.to_json()) for block in result.replaced.values()],
        message=" ".join(notes) or None,
    )


# What an audit row of a change the registry took only in part says of its targets.
PARTLY_WRITTEN = "registry write failed partway"
OUTCOME_UNKNOWN = "registry outcome unknown: may have taken effect"


def _run(
    operation: Callable[[], T],
    *,
    partly_done: Callable[[list[str], str], None] | None = None,
    time_left: float | None = None,
) -> T:
    """Map the block module's refusals to HTTP; their texts are fixed here, never echoed.

    When the registry failed partway through, `partly_done` is given the networks that
    took effect (PARTLY_WRITTEN) and those that may have (OUTCOME_UNKNOWN): the next
    sweep applies whatever the registry holds, so each is audited.

    `time_left` (seconds; blocks.request_budget): when the IP-set sync stops retrying,
    so a change that a contended WAF holds up is answered pending and audited in time.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from functions.shared import blocks
    from functions.shared.aws_clients import REQUEST
    from functions.shared.observability import logger

    try:
        with blocks.request_budget(REQUEST, time_left=time_left):
            return operation()
    except blocks.RegistryOutcomeUnknown as exc:
        logger.exception("block registry answers lost and not readable back")
        if partly_done is not None:
            if exc.changed:
                partly_done([b.ip for b in exc.changed], PARTLY_WRITTEN)
            if exc.unknown:
                partly_done(exc.unknown, OUTCOME_UNKNOWN)
        raise ServiceUnavailable(
            "The block registry's answers were lost and it could not be read back: the "
            "change may have taken effect. Check GET /admin/blocks; repeating the request "
            "is safe."
        ) from exc
    except blocks.RegistryWriteFailed as exc:
        logger.exception("block registry write failed partway")
        if exc.changed and partly_done is not None:
            partly_done([b.ip for b in exc.changed], PARTLY_WRITTEN)
        raise ServiceUnavailable() from exc
    except (ClientError, BotoCoreError) as exc:
        # The registry (DynamoDB) or WAF refused or could not be reached: the caller
        # may retry; what failed goes to the log, not to the answer.
        logger.exception("block operation failed on an AWS call")
        raise ServiceUnavailable() from exc
    except blocks.InvalidTarget as exc:
        raise BadRequest(
            "Each target must be an IP address or CIDR, not too wide, without an IPv6 zone id."
        ) from exc
    except blocks.InvalidReason as exc:
        raise BadRequest(
            f"The reason must be one line of plain text of at most {MAX_REASON_LENGTH} characters."
        ) from exc
    except blocks.ProtectedAddress as exc:
        raise Conflict("A target is on the admin allowlist or the never-block list.") from exc
    except blocks.BlockError as exc:
        # The protected lists unreadable, the registry throttling every write: nothing
        # was changed, and the caller may retry.
        logger.exception("block operation could not go ahead")
        raise ServiceUnavailable() from exc


def list_blocks(caller: Caller) -> BlockList:
    from functions.shared import blocks

    require_admin(caller)
    live = _run(blocks.list_blocks)
    return BlockList(
        blocks=[BlockView(**b.to_json()) for b in live[:MAX_LISTED_BLOCKS]],
        total=len(live),
        truncated=len(live) > MAX_LISTED_BLOCKS,
    )


@contextmanager
def _refusal_audited(
    action: str,
    actor: Caller,
    source_ip: str | None,
    targets: Sequence[str],
    **asked: str | int | None,
) -> Iterator[None]:
    """A change of well-formed targets the API refuses (a 409: on the admin allowlist or
    the never-block list; a 404: not blocked) leaves an audit_log row of its own, as a
    refused API-key change does: an admin session trying to block the admins' own
    addresses shows in audit_log, not only the changes it made. Targets are recorded as
    their canonical networks, never as the caller's text."""
    try:
        yield
    except (Conflict, NotFound) as exc:
        from functions.api.identity.audit import record_refused_change

        record_refused_change(
            action,
            reason=exc.code,
            actor=actor.user_id,
            source_ip=source_ip,
            detail={"targets": ",".join(_canonical(targets)), **asked},
        )
        raise


def _canonical(targets: Sequence[str]) -> list[str]:
    """The networks the targets name, each once. Every target of a 409 or 404 parsed
    before it was refused; one that does not is left out, never written as sent."""
    from functions.shared.blocks import InvalidTarget, parse_target

    networks: dict[str, None] = {}
    for target in targets:
        try:
            networks[str(parse_target(target))] = None
        except InvalidTarget:
            continue
    return list(networks)


def add_blocks(
    caller: Caller, request: BlockRequest, source_ip: str | None, time_left: float | None = None
) -> BlockChange:
    """Block addresses; `pending` in the answer when the IP sets take it at the sweep."""
    from functions.api.identity.audit import record_admin_action
    from functions.shared import blocks

    actor = require_admin(caller)

    def audit(targets: Sequence[str], outcome: str | None = None) -> None:
        record_admin_action(
            "waf_block",
            actor=actor.user_id,
            source_ip=source_ip,
            targets=",".join(targets),
            duration_seconds=request.duration_seconds,
            waf_ip_sets=outcome,
        )

    with _refusal_audited(
        "waf_block",
        actor,
        source_ip,
        request.targets,
        duration_seconds=request.duration_seconds,
    ):
        result = _run(
            lambda: blocks.block(
                request.targets,
                reason=request.reason,
                duration_seconds=request.duration_seconds,
                actor=str(actor.user_id),
            ),
            partly_done=audit,
            time_left=time_left,
        )
    audit([b.ip for b in result.changed], "pending" if result.pending else None)
    return _change(result)


def remove_block(
    caller: Caller, ip: str, source_ip: str | None, time_left: float | None = None
) -> BlockChange:
    """Unblock one address at once; NotFound if it was not blocked, naming the blocked
    network that still covers it, if one does, or the narrower blocks inside it. The
    answer says whether the IP sets took it yet (`pending`) and which wider block
    still covers it (`covered_by`)."""
    from functions.api.identity.audit import record_admin_action
    from functions.shared import blocks

    actor = require_admin(caller)

    def audit(targets: Sequence[str], outcome: str | None = None) -> None:
        record_admin_action(
            "waf_unblock",
            actor=actor.user_id,
            source_ip=source_ip,
            targets=",".join(targets),
            waf_ip_sets=outcome,
        )

    with _refusal_audited("waf_unblock", actor, source_ip, [ip]):
        result = _run(
            lambda: blocks.unblock([ip], actor=str(actor.user_id)),
            partly_done=audit,
            time_left=time_left,
        )
        if not result.changed:
            _refuse_unblocked(result)
    audit([b.ip for b in result.changed], "pending" if result.pending else None)
    return _change(result)


def _refuse_unblocked(result: ChangeResult) -> NoReturn:
    """The 404 for an unblock that found no block of its own, naming the blocked network
    that covers the target, if one does, or the narrower blocks inside it."""
    # Registry CIDRs in canonical form, never the caller's text.
    covering = [n for networks in result.covered_by.values() for n in networks]
    if covering:
        raise NotFound(
            f"The address is not blocked by itself: it is inside the blocked network "
            f"{', '.join(covering)}. Only unblocking that network lets it through."
        )
    inside = [n for networks in result.blocked_inside.values() for n in networks]
    if inside:
        raise NotFound(
            f"The network is not blocked as a whole: blocked inside it: "
            f"{', '.join(inside)}. Unblock those by name."
        )
    raise NotFound()
