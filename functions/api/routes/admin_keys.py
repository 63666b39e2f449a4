"""Admin management of API keys over HTTP: create, list, rotate, revoke.

Reached only through the admin chain (every lock passed); what each operation
does is functions/api/admin/keys.py.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from functions.api.admin import keys
from functions.api.admin.keys import (
    CreatedKey,
    KeyList,
    NewKeyRequest,
    RotatedKey,
    RotateRequest,
)
from functions.api.admin.pages import DEFAULT_ADMIN_PAGE_SIZE
from functions.api.caller_context import require_caller
from functions.api.models import ApiModel
from functions.api.routes.paging import PAGE_RESPONSES, PageCursor, PageSize

router = APIGatewayRouter()  # type: ignore[no-untyped-call]


def _source_ip() -> str:
    return router.current_event.request_context.identity.source_ip or ""


def _created(body: ApiModel) -> Response[Any]:
    return Response(
        status_code=201,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump(mode="json"),
    )


@router.post(
    "/admin/api-keys",
    summary="Create an API key",
    tags=["admin"],
    responses={
        201: {
            "description": "Created; the key is shown once",
            "content": {"application/json": {"model": CreatedKey}},
        },
        404: {"description": "The owner does not exist."},
        409: {
            "description": (
                "Only an admin's key may have the admin scope; or this owner already "
                "got a key with this client_token (the answer names it)."
            )
        },
    },
)
def create_key(request: NewKeyRequest) -> Response[Any]:
    return _created(keys.create_key(require_caller(router), request, _source_ip()))


@router.get(
    "/admin/api-keys",
    summary="List API keys (never their secrets), oldest first",
    tags=["admin"],
    responses=PAGE_RESPONSES,
)
def list_keys(
    owner_id: Annotated[UUID | None, Query()] = None,
    limit: PageSize = DEFAULT_ADMIN_PAGE_SIZE,
    cursor: PageCursor = None,
) -> KeyList:
    return keys.list_keys(require_caller(router), owner_id, limit=limit, cursor=cursor)


@router.post(
    "/admin/api-keys/<key_id>/rotate",
    summary="Rotate an API key",
    tags=["admin"],
    responses={
        201: {
            "description": "Successor created; the old key expires after the grace period",
            "content": {"application/json": {"model": RotatedKey}},
        },
        404: {"description": "No API key has this id."},
        409: {"description": "The key is revoked, expired or already rotated."},
    },
)
def rotate_key(key_id: str, request: RotateRequest | None = None) -> Response[Any]:
    return _created(keys.rotate_key(require_caller(router), key_id, request, _source_ip()))


@router.post(
    "/admin/api-keys/<key_id>/revoke",
    summary="Revoke an API key now",
    tags=["admin"],
    responses={
        200: {
            "description": "Revoked (a revoked key stays revoked); `live_successors` names "
            "the keys it was rotated to that still work"
        },
        404: {"description": "No API key has this id."},
        409: {
            "description": "The key is the last live admin key (no other lasts as long): "
            "rotate it with no grace instead, or first issue another admin key that "
            "expires no sooner."
        },
    },
)
def revoke_key(key_id: str) -> keys.RevokedKey:
    return keys.revoke_key(require_caller(router), key_id, _source_ip())
