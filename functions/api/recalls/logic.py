"""What the recall and subscription routes decide: parse, validate, pick the tier.

Reads go through the read-only session, writes through the app session; anything
about subscriptions runs scoped to the caller so the database's RLS applies. Errors
are domain errors with fixed messages; a database error never reaches the caller.
"""

from __future__ import annotations

import re
from datetime import date
from uuid import UUID

from functions.api.models import CONTROL_CHARACTERS, composed
from functions.api.recalls import queries
from functions.api.recalls.cursor import decode_cursor, encode_cursor, query_digest
from functions.api.recalls.models import (
    DEFAULT_PAGE_SIZE,
    MAX_SUBSCRIPTIONS,
    NewSubscription,
    Recall,
    RecallPage,
    RecallSearch,
    Subscription,
    SubscriptionList,
)
from functions.shared.caller import Caller
from functions.shared.db import readonly_session, write_session
from functions.shared.errors import BadRequest, Conflict, NotFound, Unauthorized

_RECALL_ID = re.compile(r"[1-9][0-9]{0,18}")
_MAX_BIGINT = 2**63 - 1


class MalformedId(BadRequest):
    default_message = "The id is malformed."


def _encodable(value: str) -> bool:
    # JSON may carry a lone surrogate ("\\ud800"), which no UTF-8 database text can hold.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text_filter(value: str | None) -> str | None:
    if value is None:
        return None
    # PostgreSQL text cannot hold NUL, and no product name needs control characters.
    if CONTROL_CHARACTERS.search(value) or not _encodable(value):
        raise BadRequest("The request contains characters that are not allowed.")
    # Composed, as the feed's text is stored: "crème" matches however it was typed.
    stripped = composed(value.strip())
    return stripped or None


def search_query(q: str | None, brand: str | None, since: date | None) -> str:
    """The digest a search's cursors carry, of its normalised filters (`_text_filter`'s
    output): the values the query binds, so "q= crib" and "q=crib" agree. The brand
    keeps its case: PostgreSQL's lower() matches it, which Python's need not agree
    with, and a needless refusal only costs a restart. Not the limit: a keyset
    continues after its row whatever the page size."""
    return query_digest(
        f"GET /recalls ORDER BY {queries.RECALL_ORDER}",
        {"q": q, "brand": brand, "since": since.isoformat() if since is not None else None},
    )


def search_recalls(
    *,
    q: str | None = None,
    brand: str | None = None,
    since: date | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> RecallPage:
    words, maker = _text_filter(q), _text_filter(brand)
    query = search_query(words, maker, since)
    search = RecallSearch(
        q=words,
        brand=maker,
        since=since,
        limit=limit,
        after=decode_cursor(cursor, query) if cursor is not None else None,
    )
    with readonly_session() as conn:
        rows = queries.search_recalls(conn, search)
    page, more = rows[: search.limit], len(rows) > search.limit
    next_cursor = encode_cursor(page[-1].recall_date, page[-1].id, query) if more and page else None
    return RecallPage(items=page, next_cursor=next_cursor)


def parse_recall_id(raw: str) -> int:
    if not _RECALL_ID.fullmatch(raw) or int(raw) > _MAX_BIGINT:
        raise MalformedId()
    return int(raw)


def recall_by_id(raw_id: str) -> Recall:
    recall_id = parse_recall_id(raw_id)
    with readonly_session() as conn:
        recall = queries.get_recall(conn, recall_id)
    if recall is None:
        raise NotFound("No recall has this id.")
    return recall


# The canonical form only, as the OpenAPI document's `format: uuid` says: UUID()
# also takes braces, "urn:uuid:" and hyphens anywhere among 32 hex digits.
_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def parse_subscription_id(raw: str) -> UUID:
    if not _CANONICAL_UUID.fullmatch(raw):
        raise MalformedId()
    return UUID(raw)


def subscriptions_of(caller: Caller) -> SubscriptionList:
    with readonly_session(user_id=caller.user_id, role=caller.role) as conn:
        return SubscriptionList(items=queries.list_subscriptions(conn))


def subscribe(caller: Caller, request: NewSubscription) -> Subscription:
    import psycopg

    product = _text_filter(request.product)
    brand = _text_filter(request.brand)
    if product is None:
        raise BadRequest("A product is required.")
    try:
        with write_session(user_id=caller.user_id, role=caller.role) as conn:
            created = queries.insert_subscription(
                conn, caller.user_id, product, brand, MAX_SUBSCRIPTIONS
            )
    except (queries.AlreadyWatched, psycopg.errors.UniqueViolation) as exc:
        raise Conflict("This product is already watched.") from exc
    except psycopg.errors.ForeignKeyViolation as exc:
        # The caller's user row is gone (deleted account with a still-valid token).
        raise Unauthorized() from exc
    if created is None:
        raise Conflict(f"At most {MAX_SUBSCRIPTIONS} products can be watched; remove one first.")
    return created


def unsubscribe(caller: Caller, raw_id: str) -> None:
    subscription_id = parse_subscription_id(raw_id)
    with write_session(user_id=caller.user_id, role=caller.role) as conn:
        deleted = queries.delete_subscription(conn, subscription_id)
    # Someone else's id looks exactly like an unknown one: RLS hides it, and so do we.
    if not deleted:
        raise NotFound("No subscription has this id.")
