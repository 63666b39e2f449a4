"""The SQL of recalls and subscriptions. Values are always bound parameters; the only
composed SQL is fixed fragments chosen by which filters are present."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from functions.api.recalls.models import Recall, RecallSearch, Subscription

if TYPE_CHECKING:
    import psycopg

_RECALL_COLUMNS = (
    "id, source_id, product, brand, hazard, remedy, recall_date, description, country, url"
)


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
        "SELECT {columns} FROM public.recalls WHERE {where} "
        "ORDER BY recall_date DESC, id DESC LIMIT %(limit)s"
    ).format(columns=sql.SQL(_RECALL_COLUMNS), where=where)
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


def list_subscriptions(conn: psycopg.Connection[Any]) -> list[Subscription]:
    """The session caller's subscriptions: RLS, not a WHERE clause, does the scoping."""
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT id, product, brand, created_at FROM public.subscriptions "
            "ORDER BY created_at, id"
        ).fetchall()
    return [Subscription.model_validate(row) for row in rows]


def insert_subscription(
    conn: psycopg.Connection[Any], user_id: UUID, product: str, brand: str | None
) -> Subscription:
    from psycopg.rows import dict_row

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
