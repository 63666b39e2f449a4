"""/admin/blocks: the WAF auto-block list, for an admin (through the admin chain).

The same operations as `babyshield waf list|block|unblock` and the responder
(functions/shared/blocks.py): the registry is written first and the IP sets are
then synced to it, so a block or unblock here takes effect at the WAF at once.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import ConfigDict, Field

from functions.api.caller_context import require_caller
from functions.api.models import ApiModel
from functions.shared.caller import Caller
from functions.shared.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
)

router = APIGatewayRouter()  # type: ignore[no-untyped-call]

MAX_TARGETS = 100
MIN_BLOCK_SECONDS = 60
MAX_BLOCK_SECONDS = 30 * 24 * 3600


class BlockView(ApiModel):
    ip: str
    version: int
    reason: str
    alarm: str
    source: str
    first_seen: int
    last_seen: int
    blocked_until: int
    offences: int
    requests: int
    event_id: str | None
    actor: str | None


class BlockList(ApiModel):
    blocks: list[BlockView]


class BlockRequest(ApiModel):
    model_config = ConfigDict(extra="forbid")

    targets: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=64)]],
        Field(min_length=1, max_length=MAX_TARGETS),
    ]
    reason: Annotated[str, Field(min_length=1, max_length=200)]
    duration_seconds: Annotated[int, Field(ge=MIN_BLOCK_SECONDS, le=MAX_BLOCK_SECONDS)] = 4 * 3600


class BlockChange(ApiModel):
    changed: list[BlockView]
    not_found: list[str]


def _admin() -> Caller:
    caller = require_caller(router)
    if caller.role != "admin":
        raise Forbidden()
    return caller


def _source_ip() -> str | None:
    return router.current_event.request_context.identity.source_ip


def _change(result: Any) -> BlockChange:
    return BlockChange(
        changed=[BlockView(**block.to_json()) for block in result.changed],
        not_found=list(result.not_found),
    )


def _run(operation: Any) -> Any:
    """Map the block module's refusals to HTTP; their texts are fixed here, never echoed."""
    from functions.shared import blocks

    try:
        return operation()
    except blocks.InvalidTarget as exc:
        raise BadRequest("Each target must be an IP address or CIDR, not too wide.") from exc
    except blocks.ProtectedAddress as exc:
        raise Conflict("A target is on the admin allowlist or the never-block list.") from exc
    except (blocks.ProtectedListUnavailable, blocks.IpSetSyncFailed) as exc:
        raise ServiceUnavailable() from exc


@router.get("/admin/blocks", summary="List live WAF blocks", tags=["admin"])
def list_blocks() -> BlockList:
    from functions.shared import blocks

    _admin()
    return BlockList(blocks=[BlockView(**b.to_json()) for b in _run(blocks.list_blocks)])


@router.post("/admin/blocks", summary="Block addresses by hand", tags=["admin"])
def add_blocks(request: BlockRequest) -> Response[BlockChange]:
    from functions.api.identity.audit import record_admin_action
    from functions.shared import blocks

    caller = _admin()
    result = _run(
        lambda: blocks.block(
            request.targets,
            reason=request.reason,
            duration_seconds=request.duration_seconds,
            actor=str(caller.user_id),
        )
    )
    change = _change(result)
    record_admin_action(
        "waf_block",
        actor=caller.user_id,
        source_ip=_source_ip(),
        targets=",".join(b.ip for b in change.changed),
        duration_seconds=request.duration_seconds,
    )
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=change)


@router.delete("/admin/blocks/<ip>", summary="Remove a block at once", tags=["admin"])
def remove_block(ip: str) -> Response[None]:
    from functions.api.identity.audit import record_admin_action
    from functions.shared import blocks

    caller = _admin()
    result = _run(lambda: blocks.unblock([ip], actor=str(caller.user_id)))
    if not result.changed:
        raise NotFound()
    record_admin_action(
        "waf_unblock",
        actor=caller.user_id,
        source_ip=_source_ip(),
        targets=",".join(b.ip for b in result.changed),
    )
    return Response(status_code=204, content_type=None, body=None)
