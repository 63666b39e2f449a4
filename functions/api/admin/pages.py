"""Pages of the admin lists (users, API keys): keyset pagination on (created_at, id).

Both lists only grow (every key ever issued stays, rotated, revoked or expired), and
an answer a Lambda function cannot return (6 MB) would be API Gateway's 502: an admin
who can no longer list keys cannot find the one to revoke. A page continues strictly
after the last row's (created_at, id), so rows added meanwhile never shift a page;
a key added meanwhile sorts after the pages already read (sql/017: stamped at its
insert, and a page waits for keys being inserted). The cursor only says where to
continue, so it is encoded, not signed; it names its query (list and filters, as in
functions/api/recalls/cursor.py), so one sent with another is a 400 that says to
start again. Any malformed cursor is a 400.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from functions.api.recalls.cursor import (
    InvalidCursor,
    decode_position,
    encode_position,
    query_digest,
)

DEFAULT_ADMIN_PAGE_SIZE = 100
MAX_ADMIN_PAGE_SIZE = 500
# A user's cursor, the longest, is 126 characters encoded (microseconds, a UUID, the digest).
MAX_ADMIN_CURSOR_LENGTH = 160


def list_query(listing: str, filters: Mapping[str, str | None] | None = None) -> str:
    """The digest a list's cursors carry: `listing` names the list and its order,
    `filters` its normalised filters. Not the page size: a keyset continues after its
    row whatever the size."""
    return query_digest(listing, filters or {})


def encode_cursor(created_at: datetime, row_id: str, query: str) -> str:
    return encode_position(created_at.astimezone(UTC).isoformat(), row_id, query)


def decode_cursor(token: str, valid_id: Callable[[str], bool], query: str) -> tuple[datetime, str]:
    """(created_at, id) to continue after, for the query whose digest is `query`;
    `valid_id` says whether the id has the list's shape (a UUID, a key id), so nothing
    else reaches the query."""

    def position(moment: Any, row_id: Any) -> tuple[datetime, str]:
        if not isinstance(moment, str) or not isinstance(row_id, str) or not valid_id(row_id):
            raise InvalidCursor()
        try:
            created_at = datetime.fromisoformat(moment)
        except ValueError as exc:
            raise InvalidCursor() from exc
        if created_at.tzinfo is None:
            raise InvalidCursor()
        return created_at, row_id

    return decode_position(
        token, max_length=MAX_ADMIN_CURSOR_LENGTH, query=query, position=position
    )


def page_of(
    rows: list[dict[str, Any]], limit: int, id_field: str, query: str
) -> tuple[list[dict[str, Any]], str | None]:
    """The first `limit` of `rows` (fetched as limit + 1) and the cursor after them
    (of the query whose digest is `query`), None when nothing follows."""
    if len(rows) <= limit:
        return rows, None
    page = rows[:limit]
    return page, encode_cursor(page[-1]["created_at"], str(page[-1][id_field]), query)
