"""/admin/blocks over HTTP: the WAF auto-block list, for an admin (through the admin
chain); what each operation does is functions/api/admin/blocks.py."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from functions.api.admin import blocks
from functions.api.admin.blocks import BlockChange, BlockList, BlockRequest
from functions.api.caller_context import require_caller

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

router = APIGatewayRouter()  # type: ignore[no-untyped-call]

_NOT_CHANGED = (
    "The block registry or the protected address lists could not be read or written: "
    "nothing was changed, or (the registry failing partway) only the part that is "
    "audited; when its answers were lost and it could not be read back, the message "
    "says the change may have taken effect. Repeating the request is safe."
)


# Kept back from the function's remaining time for what follows the IP-set sync:
# the audit row and the answer.
ANSWER_RESERVE_SECONDS = 3.0


def _source_ip() -> str | None:
    return router.current_event.request_context.identity.source_ip


def _time_left() -> float | None:
    """Seconds a change's IP-set sync may take before it gives up (blocks.request_budget),
    so the change is audited and answered pending before the function times out (and
    API Gateway answers 504)."""
    remaining = getattr(router.lambda_context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    return float(remaining()) / 1000 - ANSWER_RESERVE_SECONDS


@router.get("/admin/blocks", summary="List live WAF blocks", tags=["admin"])
def list_blocks() -> BlockList:
    return blocks.list_blocks(require_caller(router))


@router.post(
    "/admin/blocks",
    summary="Block addresses by hand",
    tags=["admin"],
    responses={
        201: {
            "description": "Blocked, in the WAF IP sets now; what changed",
            "content": {"application/json": {"model": BlockChange}},
        },
        202: {
            "description": (
                "Blocked and audited, but the WAF IP sets could not be updated now: "
                "`pending` is true and the sweep applies the block within 5 minutes"
            ),
            "content": {"application/json": {"model": BlockChange}},
        },
        400: {"description": "A target is not an IP address or CIDR, or is too wide."},
        409: {"description": "A target is on the admin allowlist or the never-block list."},
        503: {"description": _NOT_CHANGED},
    },
)
def add_blocks(request: BlockRequest) -> Response[BlockChange]:
    change = blocks.add_blocks(require_caller(router), request, _source_ip(), _time_left())
    if change.pending:
        return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=change)
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=change)


def _unblock_responses(refused: str) -> dict[int, OpenAPIResponse]:
    """One answer per outcome of an unblock (both DELETE routes); `refused`: the 400."""
    return {
        # No body: an empty content map, else Powertools documents the return annotation.
        204: {"description": "Unblocked, in the WAF IP sets now", "content": {}},
        200: {
            "description": (
                "Unblocked, but a wider blocked network still covers it, so the WAF still "
                "refuses it: `covered_by` and `message` name that network"
            ),
            "content": {"application/json": {"model": BlockChange}},
        },
        202: {
            "description": (
                "Unblocked and audited, but the WAF IP sets could not be updated now: "
                "`pending` is true and the sweep applies it within 5 minutes"
            ),
            "content": {"application/json": {"model": BlockChange}},
        },
        400: {"description": refused},
        404: {
            "description": "Not blocked; a blocked network that covers it, or the "
            "narrower blocks inside it, are named."
        },
        503: {"description": _NOT_CHANGED},
    }


def _unblocked(change: BlockChange) -> Response[BlockChange | None]:
    if change.pending:
        return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=change)
    if change.covered_by:
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=change)
    return Response(status_code=204, content_type=None, body=None)


# A path parameter reaches the route as sent: percent-decoded here, so an encoded
# IPv6 address (2001%3Adb8%3A%3A1) or a CIDR sent as one segment (198.51.100.0%2F24)
# means what it says. A CIDR's natural spelling, /admin/blocks/198.51.100.0/24, is
# two segments: the route below.
@router.delete(
    "/admin/blocks/<ip>",
    summary="Remove a block at once",
    tags=["admin"],
    responses=_unblock_responses("Not an IP address or CIDR."),
)
def remove_block(ip: str) -> Response[BlockChange | None]:
    caller = require_caller(router)
    return _unblocked(blocks.remove_block(caller, unquote(ip), _source_ip(), _time_left()))


@router.delete(
    "/admin/blocks/<address>/<prefix>",
    summary="Remove a network's block at once",
    tags=["admin"],
    responses=_unblock_responses("Not a CIDR."),
)
def remove_network_block(address: str, prefix: str) -> Response[BlockChange | None]:
    target = f"{unquote(address)}/{unquote(prefix)}"
    return _unblocked(
        blocks.remove_block(require_caller(router), target, _source_ip(), _time_left())
    )
