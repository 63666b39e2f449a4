"""Admin management of API keys: create, list, rotate, revoke.

Reached only through the admin chain (every lock passed). A key's secret is in
the response to create and rotate, once; only its SHA-256 is stored, so it can
never be shown again. Rotation issues a successor with the same owner, scopes
and limit, and cuts the old key's life to a grace period (default 7 days) so
clients can switch without an outage.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import ConfigDict, Field

from functions.api.caller_context import require_caller
from functions.api.identity.audit import audit
from functions.api.models import ApiModel
from functions.shared.caller import Caller
from functions.shared.errors import Forbidden, NotFound
from functions.shared.identity.api_keys import KEY_ID_PATTERN
from functions.shared.settings import get_settings

router = APIGatewayRouter()  # type: ignore[no-untyped-call]

Scope = Literal["recalls:read", "admin"]


class NewKeyRequest(ApiModel):
    model_config = ConfigDict(extra="forbid")

    owner_id: UUID
    scopes: list[Scope] = Field(min_length=1, max_length=2)
    rate_limit_per_minute: int = Field(default=60, ge=1, le=100_000)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class RotateRequest(ApiModel):
    model_config = ConfigDict(extra="forbid")

    grace_days: int | None = Field(default=None, ge=0, le=90)


class ApiKeyView(ApiModel):
    key_id: str
    owner_id: UUID
    scopes: list[str]
    rate_limit_per_minute: int
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_from: str | None


class CreatedKey(ApiKeyView):
    # The only time the full key leaves the service; store it now.
    api_key: str


class RotatedKey(ApiModel):
    new_key: CreatedKey
    old_key: ApiKeyView


class KeyList(ApiModel):
    keys: list[ApiKeyView]


def _admin() -> Caller:
    caller = require_caller(router)
    if caller.role != "admin":
        raise Forbidden()
    return caller


def _source_ip() -> str:
    return router.current_event.request_context.identity.source_ip or ""


def _key_id(raw: str) -> str:
    if not KEY_ID_PATTERN.fullmatch(raw):
        raise NotFound()
    return raw


def _created(row: dict[str, Any], plaintext: str) -> Response[Any]:
    body = CreatedKey(**row, api_key=plaintext)
    return Response(
        status_code=201,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump(mode="json"),
    )


@router.post(
    "/admin/api-keys",
    summary="Create an API key",
    tags=["admin"],
    responses={201: {"description": "Created; the key is shown once"}},
)
def create_key(request: NewKeyRequest) -> Response[Any]:
    from functions.api.identity.store import insert_api_key
    from functions.shared.identity.api_keys import generate_api_key

    actor = _admin()
    new_key = generate_api_key()
    expires_at = (
        datetime.now(UTC) + timedelta(days=request.expires_in_days)
        if request.expires_in_days
        else None
    )
    row = insert_api_key(
        actor,
        new_key,
        owner_id=request.owner_id,
        scopes=sorted(set(request.scopes)),
        rate_limit_per_minute=request.rate_limit_per_minute,
        expires_at=expires_at,
    )
    audit(
        "api_key_create",
        "success",
        user_id=actor.user_id,
        key_id=new_key.key_id,
        source_ip=_source_ip(),
        persist=True,
        owner_id=str(request.owner_id),
    )
    return _created(row, new_key.plaintext)


@router.get("/admin/api-keys", summary="List API keys (never their secrets)", tags=["admin"])
def list_keys(owner_id: Annotated[UUID | None, Query()] = None) -> KeyList:
    from functions.api.identity.store import list_api_keys

    rows = list_api_keys(_admin(), owner_id)
    return KeyList(keys=[ApiKeyView(**row) for row in rows])


@router.post(
    "/admin/api-keys/<key_id>/rotate",
    summary="Rotate an API key",
    tags=["admin"],
    responses={
        201: {"description": "Successor created; the old key expires after the grace period"}
    },
)
def rotate_key(key_id: str, request: RotateRequest | None = None) -> Response[Any]:
    from functions.api.identity.store import rotate_api_key
    from functions.shared.identity.api_keys import generate_api_key

    actor = _admin()
    old_id = _key_id(key_id)
    grace_days = (
        request.grace_days
        if request is not None and request.grace_days is not None
        else get_settings().api_key_rotation_grace_days
    )
    new_key = generate_api_key()
    new_row, old_row = rotate_api_key(actor, old_id, new_key, timedelta(days=grace_days))
    audit(
        "api_key_rotate",
        "success",
        user_id=actor.user_id,
        key_id=new_key.key_id,
        source_ip=_source_ip(),
        persist=True,
        rotated_from=old_id,
        grace_days=grace_days,
    )
    body = RotatedKey(
        new_key=CreatedKey(**new_row, api_key=new_key.plaintext), old_key=ApiKeyView(**old_row)
    )
    return Response(
        status_code=201,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump(mode="json"),
    )


@router.post("/admin/api-keys/<key_id>/revoke", summary="Revoke an API key now", tags=["admin"])
def revoke_key(key_id: str) -> ApiKeyView:
    from functions.api.identity.store import revoke_api_key

    actor = _admin()
    row = revoke_api_key(actor, _key_id(key_id))
    audit(
        "api_key_revoke",
        "success",
        user_id=actor.user_id,
        key_id=row["key_id"],
        source_ip=_source_ip(),
        persist=True,
    )
    return ApiKeyView(**row)
