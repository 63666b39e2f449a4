"""The opaque pagination cursor: where a page ended, and which query it belongs to.

A recall cursor is the (recall_date, id) of the last row of a page. Keyset pagination
continues strictly after that key, so rows inserted meanwhile never shift a page and no
row is repeated or skipped. A feed correction that moves a recall's date between two
pages moves it in the order too: that walk may show it twice or miss it
(docs/DATABASE.md).

A position only means something in the result set it was read from: sent with other
filters it would start a page in the middle of another result set, the rows before it
skipped without a word. So a cursor also carries a short digest of its query (the
list, its order and every filter, as validated and normalised, so two spellings of one
query agree), and a cursor sent with another query is a 400 telling the client to start
again. The page size is left out: a keyset continues after its row whatever the size,
so a client may change it mid-walk. A cursor from before the digest, a bare pair, gets
the same 400: which query made it cannot be known.

The cursor carries no secret (it only says where to continue) and grants nothing, so it
is encoded, not signed, and the digest is a plain truncated hash, not a MAC. Decoding is
strict: any malformed cursor is a 400.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any, TypeVar

from functions.shared.errors import BadRequest

# ["9999-12-31",9223372036854775807,"<16 hex>"] is 71 characters encoded.
MAX_CURSOR_LENGTH = 96
_MAX_ID = 2**63 - 1
# 64 bits: two different queries of one list never agree by chance.
_DIGEST_HEX_LENGTH = 16
_DIGEST = re.compile(f"[0-9a-f]{{{_DIGEST_HEX_LENGTH}}}")

Position = TypeVar("Position")


class InvalidCursor(BadRequest):
    default_message = "The cursor is not valid."


class CursorMismatch(BadRequest):
    """A well-formed cursor of another query (or of one from before cursors named it)."""

    code = "cursor_mismatch"
    default_message = (
        "The cursor was made by another query (other filters, search or order) or by an "
        "earlier version of the API; send the request again without the cursor to start "
        "from the first page."
    )


def query_digest(listing: str, filters: Mapping[str, str | None]) -> str:
    """The digest a cursor carries: `listing` names the list and its order (a cursor
    of one list means nothing in another), `filters` every validated, normalised value
    that shapes the result set (None when absent, so an empty filter and a missing one
    agree)."""
    canonical = json.dumps(
        {"listing": listing, "filters": dict(filters)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:_DIGEST_HEX_LENGTH]


def encode_position(first: Any, second: Any, query: str) -> str:
    """A keyset position of the query whose digest is `query`: an opaque token."""
    raw = json.dumps([first, second, query], separators=(",", ":"), ensure_ascii=True)
    return base64.urlsafe_b64encode(raw.encode("ascii")).decode("ascii").rstrip("=")


def decode_position(
    token: str,
    *,
    max_length: int,
    query: str,
    position: Callable[[Any, Any], Position],
) -> Position:
    """The position of a token `encode_position` made for the query `query`.

    `position` turns the two JSON values into the list's key or raises InvalidCursor.
    The position is checked before the query, so a cursor that was never issued is
    "not valid" whatever its form; CursorMismatch is only for one that was.
    """
    if not token or len(token) > max_length:
        raise InvalidCursor()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw.decode("ascii"))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursor() from exc
    if not isinstance(payload, list) or len(payload) not in (2, 3):
        raise InvalidCursor()
    if len(payload) == 3 and not (isinstance(payload[2], str) and _DIGEST.fullmatch(payload[2])):
        raise InvalidCursor()
    found = position(payload[0], payload[1])
    # Not a secret, so a plain comparison. A bare pair predates the digest.
    if len(payload) == 2 or payload[2] != query:
        raise CursorMismatch()
    return found


def _recall_position(day: Any, recall_id: Any) -> tuple[date, int]:
    if not isinstance(day, str) or type(recall_id) is not int or not 0 < recall_id <= _MAX_ID:
        raise InvalidCursor()
    try:
        return date.fromisoformat(day), recall_id
    except ValueError as exc:
        raise InvalidCursor() from exc


def encode_cursor(recall_date: date, recall_id: int, query: str) -> str:
    return encode_position(recall_date.isoformat(), recall_id, query)


def decode_cursor(token: str, query: str) -> tuple[date, int]:
    return decode_position(
        token, max_length=MAX_CURSOR_LENGTH, query=query, position=_recall_position
    )
