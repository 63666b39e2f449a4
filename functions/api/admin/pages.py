"""Pages of the admin lists (users, API keys): keyset pagination on (created_at, id).

Both lists only grow (every key ever issued stays, rotated, revoked or expired), and
an answer a Lambda function cannot return (6 MB) would be API Gateway's 502: an admin
who can no longer list keys cannot find the one to revoke. A page continues strictly
after the last row's (created_at, id), so rows added meanwhile never shift a page;
a key added meanwhile sorts after the pages already read (sql/017: stamped at its
insert, and a page waits for keys being inserted). The cursor only says where to
continue, so it is encoded, not signed; any malformed
cursor is a 400.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from functions.api.recalls.cursor import InvalidCursor, decode_pair, encode_pair

DEFAULT_ADMIN_PAGE_SIZE = 100
MAX_ADMIN_PAGE_SIZE = 500
MAX_ADMIN_CURSOR_LENGTH = 128


def encode_cursor(created_at: datetime, row_id: str) -> str:
    return encode_pair(created_at.astimezone(UTC).isoformat(), row_id)


def decode_cursor(token: str, valid_id: Callable[[str], bool]) -> tuple[datetime, str]:
    """(created_at, id) to continue after; `valid_id` says whether the id has the
    list's shape (a UUID, a key id), so nothing else reaches the query."""
    moment, row_id = decode_pair(token, MAX_ADMIN_CURSOR_LENGTH)
    if not isinstance(moment, str) or not isinstance(row_id, str) or not valid_id(row_id):
        raise InvalidCursor()
    try:
        created_at = datetime.fromisoformat(moment)
    except ValueError as exc:
        raise InvalidCursor() from exc
    if created_at.tzinfo is None:
        raise InvalidCursor()
    return created_at, row_id


def page_of(
    rows: list[dict[str, Any]], limit: int, id_field: str
) -> tuple[list[dict[str, Any]], str | None]:
    """The first `limit` of `rows` (fetched as limit + 1) and the cursor after them,
    None when nothing follows."""
    if len(rows) <= limit:
        return rows, None
    page = rows[:limit]
    return page, encode_cursor(page[-1]["created_at"], str(page[-1][id_field]))
