"""The opaque pagination cursor: the (recall_date, id) of the last row of a page.

Keyset pagination continues strictly after that key, so rows inserted meanwhile never
shift a page and no row is repeated or skipped. A feed correction that moves a recall's
date between two pages moves it in the order too: that walk may show it twice or miss
it (docs/DATABASE.md). The cursor carries no secret (it only
says where to continue), so it is encoded, not signed; decoding is strict and any
malformed cursor is a 400.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import date
from typing import Any

from functions.shared.errors import BadRequest

MAX_CURSOR_LENGTH = 64
_MAX_ID = 2**63 - 1


class InvalidCursor(BadRequest):
    default_message = "The cursor is not valid."


def encode_pair(first: Any, second: Any) -> str:
    """A keyset position as an opaque token: two JSON values, base64url."""
    raw = json.dumps([first, second], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode("ascii")).decode("ascii").rstrip("=")


def decode_pair(token: str, max_length: int) -> tuple[Any, Any]:
    """The two JSON values of a token `encode_pair` made; InvalidCursor for anything else."""
    if not token or len(token) > max_length:
        raise InvalidCursor()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw.decode("ascii"))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursor() from exc
    if not isinstance(payload, list) or len(payload) != 2:
        raise InvalidCursor()
    return payload[0], payload[1]


def encode_cursor(recall_date: date, recall_id: int) -> str:
    return encode_pair(recall_date.isoformat(), recall_id)


def decode_cursor(token: str) -> tuple[date, int]:
    day, recall_id = decode_pair(token, MAX_CURSOR_LENGTH)
    if not isinstance(day, str) or type(recall_id) is not int or not 0 < recall_id <= _MAX_ID:
        raise InvalidCursor()
    try:
        return date.fromisoformat(day), recall_id
    except ValueError as exc:
        raise InvalidCursor() from exc
