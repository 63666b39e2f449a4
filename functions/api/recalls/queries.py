"""The SQL of recalls and subscriptions. Values are always bound parameters; the only
composed SQL is fixed fragments chosen by which filters are present."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from functions.api.recalls.models import Recall, RecallSearch, Subscription

if TYPE_CHECKING:
    import psycopg

_RECALL_COLUMNS = (
    "id, source_id, product, brand, hazard, remedy, recall_date, description, country, url"
)
# The order of a search: its cursors' digest names it, and the keyset condition
# below (`<`) assumes it.
RECALL_ORDER = "recall_date DESC, id DESC"


def _recall(row: dict[str, Any]) -> Recall:
    return Recall.model_validate(row)


def search_recalls(conn: psycopg.Connection[Any], search: RecallSearch) -> list[Recall]:
    """Up to `search.limit + 1` recalls, newest first: the extra row says "more"."""
    from psycopg import sql
    from psycopg.rows import dict_row

    conditions: list[sql.Composable] = []
    params: dict[str, Any] = {"limit": search.limit + 1}
    if search.q is not None:
        # websearch_to_tsquery accepts any text (quotes, operators) without a syntax error.
        conditions.append(sql.SQL("search @@ websearch_to_tsquery('english', %(q)s)"))
        params["q"] = search.q
    if search.brand is not None:
        conditions.append(sql.SQL("lower(brand) = lower(%(brand)s)"))
        params["brand"] = search.brand
    if search.since is not None:
        conditions.append(sql.SQL("recall_date >= %(since)s"))
        params["since"] = search.since
    if search.after is not None:
        conditions.append(sql.SQL("(recall_date, id) < (%(after_date)s, %(after_id)s)"))
        params["after_date"], params["after_id"] = search.after
    where = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("true")
    query = sql.SQL(
        "SELECT {columns} FROM public.recalls WHERE {where} ORDER BY {order} LIMIT %(limit)s"
    ).format(columns=sql.SQL(_RECALL_COLUMNS), where=where, order=sql.SQL(RECALL_ORDER))
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, params).fetchall()
    return [_recall(row) for row in rows]


def get_recall(conn: psycopg.Connection[Any], recall_id: int) -> Recall | None:
    from psycopg import sql
    from psycopg.rows import dict_row

    query = sql.SQL("SELECT {columns} FROM public.recalls WHERE id = %s").format(
        columns=sql.SQL(_RECALL_COLUMNS)
    )
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query, (recall_id,)).fetchone()
    return None if row is None else _recall(row)


def upsert_recall(
    conn: psycopg.Connection[Any], recall: dict[str, Any], occurred_at: datetime
) -> tuple[int, bool, bool]:
    """Insert or update by source_id; (id, created, applied).

    `updated_at` holds the feed's time of the version stored, and a version older
    than it changes nothing: a sender's retry of an old event, arriving after a
    newer one, must not put the old text back. The row lock ON CONFLICT takes
    orders concurrent deliveries of one recall the same way.
    """
    row = conn.execute(
        "INSERT INTO public.recalls (source_id, product, brand, hazard, remedy, "
        "recall_date, description, country, url, updated_at) "
        "VALUES (%(source_id)s, %(product)s, %(brand)s, %(hazard)s, %(remedy)s, "
        "%(recall_date)s, %(description)s, %(country)s, %(url)s, %(occurred_at)s) "
        "ON CONFLICT (source_id) DO UPDATE SET product = EXCLUDED.product, "
        "brand = EXCLUDED.brand, hazard = EXCLUDED.hazard, remedy = EXCLUDED.remedy, "
        "recall_date = EXCLUDED.recall_date, description = EXCLUDED.description, "
        "country = EXCLUDED.country, url = EXCLUDED.url, updated_at = EXCLUDED.updated_at "
        "WHERE public.recalls.updated_at <= EXCLUDED.updated_at "
        "RETURNING id, (xmax = 0) AS created",
        {**recall, "occurred_at": occurred_at},
    ).fetchone()
    if row is not None:
        return int(row[0]), bool(row[1]), True
    # A stale version: the row exists (ON CONFLICT found and locked it) and stays.
    kept = conn.execute(
        "SELECT id FROM public.recalls WHERE source_id = %s", (recall["source_id"],)
    ).fetchone()
    if kept is None:
        raise RuntimeError("conflicting recall not found")
    return int(kept[0]), False, False


def list_subscriptions(conn: psycopg.Connection[Any]) -> list[Subscription]:
    """The session caller's subscriptions: RLS, not a WHERE clause, does the scoping."""
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT id, product, brand, created_at FROM public.subscriptions "
            "ORDER BY created_at, id"
        ).fetchall()
    return [Subscription.model_validate(row) for row in rows]


# The class half of the two-key advisory lock on one caller's subscriptions (the
# one-key space, which migrations use, is separate).
_SUBSCRIPTIONS_LOCK_CLASS = 0x5B55


class AlreadyWatched(Exception):
    """The caller watches this product and brand already, in some case."""


def insert_subscription(
    conn: psycopg.Connection[Any], user_id: UUID, product: str, brand: str | None, limit: int
) -> Subscription | None:
    """Add a watch; None when the caller already has `limit` of them, AlreadyWatched
    when one of them has this product and brand up to case.

    Case as the recall search's brand filter sees it (PostgreSQL's lower()): the table's
    unique constraint compares exact text only. The lock holds the count and the
    comparison until this transaction ends, so simultaneous adds by one caller can
    neither pass the limit nor add one product twice together.
    """
    from psycopg.rows import dict_row

    conn.execute(
        "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
        (_SUBSCRIPTIONS_LOCK_CLASS, str(user_id)),
    )
    counted = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE lower(product) = lower(%(product)s::text) "
        "AND lower(brand) IS NOT DISTINCT FROM lower(%(brand)s::text)) "
        "FROM public.subscriptions WHERE user_id = %(user_id)s",
        {"user_id": user_id, "product": product, "brand": brand},
    ).fetchone()
    if counted is not None and counted[1] > 0:
        raise AlreadyWatched()
    if counted is not None and counted[0] >= limit:
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "INSERT INTO public.subscriptions (user_id, product, brand) VALUES (%s, %s, %s) "
            "RETURNING id, product, brand, created_at",
            (user_id, product, brand),
        ).fetchone()
    assert row is not None
    return Subscription.model_validate(row)


def delete_subscription(conn: psycopg.Connection[Any], subscription_id: UUID) -> bool:
    """Delete one of the caller's subscriptions; False when RLS shows no such row."""
    cur = conn.execute("DELETE FROM public.subscriptions WHERE id = %s", (subscription_id,))
    return cur.rowcount == 1
