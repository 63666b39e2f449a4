"""/admin/blocks over HTTP: the WAF auto-block list, for an admin (through the admin
chain); what each operation does is functions/api/admin/blocks.py."""

from __future__ import annotations

from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from functions.api.admin import blocks
from functions.api.admin.blocks import BlockChange, BlockList, BlockRequest
from functions.api.caller_context import require_caller

router = APIGatewayRouter()  # type: ignore[no-untyped-call]


def _source_ip() -> str | None:
    return router.current_event.request_context.identity.source_ip


@router.get("/admin/blocks", summary="List live WAF blocks", tags=["admin"])
def list_blocks() -> BlockList:
    return blocks.list_blocks(require_caller(router))


@router.post(
    "/admin/blocks",
    summary="Block addresses by hand",
    tags=["admin"],
    responses={
        201: {"description": "Blocked; what changed"},
        400: {"description": "A target is not an IP address or CIDR, or is too wide."},
        409: {"description": "A target is on the admin allowlist or the never-block list."},
    },
)
def add_blocks(request: BlockRequest) -> Response[BlockChange]:
    change = blocks.add_blocks(require_caller(router), request, _source_ip())
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=change)


# A path parameter reaches the route as sent: percent-decoded here, so an encoded
# IPv6 address (2001%3Adb8%3A%3A1) or a CIDR sent as one segment (198.51.100.0%2F24)
# means what it says. A CIDR's natural spelling, /admin/blocks/198.51.100.0/24, is
# two segments: the route below.
@router.delete(
    "/admin/blocks/<ip>",
    summary="Remove a block at once",
    tags=["admin"],
    # No body: an empty content map, else Powertools documents the return annotation.
    responses={
        204: {"description": "Unblocked", "content": {}},
        400: {"description": "Not an IP address or CIDR."},
        404: {"description": "Not blocked; a blocked network that covers it is named."},
    },
)
def remove_block(ip: str) -> Response[None]:
    blocks.remove_block(require_caller(router), unquote(ip), _source_ip())
    return Response(status_code=204, content_type=None, body=None)


@router.delete(
    "/admin/blocks/<address>/<prefix>",
    summary="Remove a network's block at once",
    tags=["admin"],
    responses={
        204: {"description": "Unblocked", "content": {}},
        400: {"description": "Not a CIDR."},
        404: {"description": "Not blocked; a blocked network that covers it is named."},
    },
)
def remove_network_block(address: str, prefix: str) -> Response[None]:
    target = f"{unquote(address)}/{unquote(prefix)}"
    blocks.remove_block(require_caller(router), target, _source_ip())
    return Response(status_code=204, content_type=None, body=None)
