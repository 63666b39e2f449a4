"""API keys for an admin: create, list, rotate, revoke.

A key's secret is in the answer to create and rotate, once; only its SHA-256 is
stored, so it can never be shown again. Rotation issues a successor with the
same owner, scopes and limit, and cuts the old key's life to a grace period
(default 7 days) so clients can switch without an outage.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Literal
from uuid import UUID

from pydantic import ConfigDict, Field

from functions.api.admin import pages, require_admin
from functions.api.identity.audit import audit, record_refused_change
from functions.api.models import ApiModel, WholeNumber
from functions.shared.caller import Caller
from functions.shared.errors import DomainError, NotFound
from functions.shared.identity.api_keys import KEY_ID_PATTERN
from functions.shared.settings import get_settings

Scope = Literal["recalls:read", "admin"]
# The same form as the database's check on api_keys.client_token (sql/019).
CLIENT_TOKEN_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"  # noqa: S105  # nosec B105 - a pattern


class NewKeyRequest(ApiModel):
    model_config = ConfigDict(extra="forbid")

    owner_id: UUID
    scopes: list[Scope] = Field(min_length=1, max_length=2)
    rate_limit_per_minute: Annotated[int, Field(strict=True, ge=1, le=100_000), WholeNumber] = 60
    expires_in_days: Annotated[int, Field(strict=True, ge=1, le=3650), WholeNumber] | None = None
    # Sent again with the same token (a retry after a lost answer), the create is
    # refused with the key it issued, instead of issuing a second (sql/019).
    client_token: Annotated[str, Field(pattern=CLIENT_TOKEN_PATTERN)] | None = None


class RotateRequest(ApiModel):
    model_config = ConfigDict(extra="forbid")

    grace_days: Annotated[int, Field(strict=True, ge=0, le=90), WholeNumber] | None = None


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


class RevokedKey(ApiKeyView):
    # The keys this one was rotated to (and theirs) that still work: revoking a key
    # does not revoke its successors, so an admin cutting a partner off revokes these too.
    live_successors: list[str]


class RotatedKey(ApiModel):
    new_key: CreatedKey
    old_key: ApiKeyView


class KeyList(ApiModel):
    keys: list[ApiKeyView]
    # Opaque: pass it back as `cursor` for the next page; null on the last page.
    next_cursor: str | None = None


def _key_id(raw: str) -> str:
    if not KEY_ID_PATTERN.fullmatch(raw):
        raise NotFound()
    return raw


@contextmanager
def _refusal_audited(
    action: str,
    actor: Caller,
    source_ip: str,
    detail: dict[str, str | int | None],
    key_id: str | None = None,
) -> Iterator[None]:
    """A change the API refuses (a 4xx: an admin scope for a user, a key for nobody, a
    dead key rotated) leaves an audit_log row of its own, outcome `failure` with the
    refusal's code and what was asked: a stolen admin session probing for a way up
    shows in audit_log, not only the changes it made."""
    from functions.api.identity.store import KeyAlreadyIssued

    try:
        yield
    except KeyAlreadyIssued:
        raise  # the caller's own retry; the create's row records the key
    except DomainError as exc:
        if exc.status < 500:
            record_refused_change(
                action,
                reason=exc.code,
                actor=actor.user_id,
                source_ip=source_ip,
                key_id=key_id,
                detail=detail,
            )
        raise


def create_key(caller: Caller, request: NewKeyRequest, source_ip: str) -> CreatedKey:
    from functions.api.identity.store import insert_api_key
    from functions.shared.identity.api_keys import generate_api_key

    actor = require_admin(caller)
    new_key = generate_api_key()
    expires_at = (
        datetime.now(UTC) + timedelta(days=request.expires_in_days)
        if request.expires_in_days
        else None
    )
    scopes: list[str] = sorted(set(request.scopes))
    # What the key grants, so audit_log alone shows an admin-scoped key being issued.
    asked: dict[str, str | int | None] = {
        "owner_id": str(request.owner_id),
        "scopes": ",".join(scopes),
        "rate_limit_per_minute": request.rate_limit_per_minute,
        "expires_at": expires_at.isoformat(timespec="seconds") if expires_at else None,
    }
    record = partial(
        audit,
        "api_key_create",
        "success",
        user_id=actor.user_id,
        key_id=new_key.key_id,
        source_ip=source_ip,
        owner_id=str(request.owner_id),
        scopes=",".join(scopes),
        rate_limit_per_minute=request.rate_limit_per_minute,
        expires_at=asked["expires_at"],
    )
    with _refusal_audited("api_key_create", actor, source_ip, asked):
        row = insert_api_key(
            actor,
            new_key,
            owner_id=request.owner_id,
            scopes=scopes,
            rate_limit_per_minute=request.rate_limit_per_minute,
            expires_at=expires_at,
            client_token=request.client_token,
            audit_row=lambda conn: record(row_on=conn),
        )
    record()
    return CreatedKey(**row, api_key=new_key.plaintext)


def list_keys(
    caller: Caller,
    owner_id: UUID | None,
    *,
    limit: int = pages.DEFAULT_ADMIN_PAGE_SIZE,
    cursor: str | None = None,
) -> KeyList:
    from functions.api.identity.store import list_api_keys

    actor = require_admin(caller)
    # str(UUID): one spelling of the owner, however the query wrote it.
    query = pages.list_query(
        "GET /admin/api-keys ORDER BY created_at, key_id",
        {"owner_id": str(owner_id) if owner_id is not None else None},
    )
    after = (
        pages.decode_cursor(cursor, lambda key_id: bool(KEY_ID_PATTERN.fullmatch(key_id)), query)
        if cursor is not None
        else None
    )
    found = list_api_keys(actor, owner_id, limit=limit + 1, after=after)
    rows, next_cursor = pages.page_of(found, limit, "key_id", query)
    return KeyList(keys=[ApiKeyView(**row) for row in rows], next_cursor=next_cursor)


def rotate_key(
    caller: Caller, key_id: str, request: RotateRequest | None, source_ip: str
) -> RotatedKey:
    from functions.api.identity.store import rotate_api_key
    from functions.shared.identity.api_keys import generate_api_key

    actor = require_admin(caller)
    old_id = _key_id(key_id)
    grace_days = (
        request.grace_days
        if request is not None and request.grace_days is not None
        else get_settings().api_key_rotation_grace_days
    )
    new_key = generate_api_key()
    record = partial(
        audit,
        "api_key_rotate",
        "success",
        user_id=actor.user_id,
        key_id=new_key.key_id,
        source_ip=source_ip,
        rotated_from=old_id,
        grace_days=grace_days,
    )
    with _refusal_audited(
        "api_key_rotate", actor, source_ip, {"rotated_from": old_id, "grace_days": grace_days}
    ):
        new_row, old_row = rotate_api_key(
            actor,
            old_id,
            new_key,
            timedelta(days=grace_days),
            audit_row=lambda conn: record(row_on=conn),
        )
    record()
    return RotatedKey(
        new_key=CreatedKey(**new_row, api_key=new_key.plaintext), old_key=ApiKeyView(**old_row)
    )


def revoke_key(caller: Caller, key_id: str, source_ip: str) -> RevokedKey:
    from functions.api.identity.store import revoke_api_key

    actor = require_admin(caller)
    target = _key_id(key_id)
    record = partial(
        audit,
        "api_key_revoke",
        "success",
        user_id=actor.user_id,
        key_id=target,
        source_ip=source_ip,
    )
    with _refusal_audited("api_key_revoke", actor, source_ip, {}, key_id=target):
        row = revoke_api_key(actor, target, audit_row=lambda conn: record(row_on=conn))
    record()
    return RevokedKey(**row)
