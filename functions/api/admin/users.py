"""The users, a page at a time, for an admin, never a password hash."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from functions.api.admin import pages, require_admin
from functions.api.models import ApiModel
from functions.shared.caller import Caller


class UserView(ApiModel):
    id: UUID
    email: str
    role: str
    created_at: datetime


class UserList(ApiModel):
    users: list[UserView]
    # Opaque: pass it back as `cursor` for the next page; null on the last page.
    next_cursor: str | None = None


# What the list's cursors name: it takes no filter.
LIST_QUERY = pages.list_query("GET /admin/users ORDER BY created_at, id")


def list_users(
    caller: Caller, *, limit: int = pages.DEFAULT_ADMIN_PAGE_SIZE, cursor: str | None = None
) -> UserList:
    from functions.api.identity.store import list_users as query_users

    actor = require_admin(caller)
    after = pages.decode_cursor(cursor, _is_uuid, LIST_QUERY) if cursor is not None else None
    found = query_users(actor, limit=limit + 1, after=after)
    rows, next_cursor = pages.page_of(found, limit, "id", LIST_QUERY)
    return UserList(users=[UserView(**row) for row in rows], next_cursor=next_cursor)


def _is_uuid(text: str) -> bool:
    # The spelling the list writes, and no other: UUID() also reads `urn:uuid:...`,
    # braces and bare hex, which the query's uuid cast refuses (a 500, not a 400).
    try:
        return str(UUID(text)) == text
    except ValueError:
        return False
