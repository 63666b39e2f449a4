"""The SQL behind identity: sign-in and API-key lookups (through the SECURITY
DEFINER functions, before any caller is known), API-key management and the
user list (as the admin caller, under row-level security), and the recall
upsert of the webhook. Every value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from functions.shared.caller import Caller
from functions.shared.db import readonly_session, write_session
from functions.shared.errors import Conflict, NotFound
from functions.shared.identity.api_keys import SCOPE_ADMIN, ApiKeyRecord, NewApiKey
from functions.shared.observability import logger

# Writes a change's audit_log row on the change's own connection, before it commits.
AuditRow = Callable[[Any], None]

# An advisory lock key ("bs api-key list order"): a key is inserted under it shared,
# and a page of the key list is read under it exclusive, so the page waits for keys
# being inserted and a key inserted after the page is stamped after it (sql/017).
_KEY_LIST_ORDER_LOCK = 0x6273206B65796C73


def _hold_key_order_for_insert(conn: Any) -> None:
    conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (_KEY_LIST_ORDER_LOCK,))


@dataclass(frozen=True)
class LoginRecord:
    user_id: UUID
    password_hash: str = field(repr=False)
    role: str


def user_for_login(email: str) -> LoginRecord | None:
    with readonly_session() as conn:
        row = conn.execute(
            "SELECT id, password_hash, role FROM auth.user_for_login(%s)", (email,)
        ).fetchone()
    if row is None:
        return None
    return LoginRecord(user_id=row[0], password_hash=row[1], role=row[2])


def replace_password_hash(user_id: UUID, role: str, stored: str, password_hash: str) -> bool:
    """Store a hash made with today's cost in place of `stored`, the hash the sign-in
    checked; False when it is no longer the stored one (changed meanwhile). The app tier
    writes no hash directly (sql/015): the function changes one only for a caller who
    shows the stored hash, which the app tier cannot read."""
    with write_session(user_id=user_id, role="admin" if role == "admin" else "user") as conn:
        row = conn.execute(
            "SELECT auth.replace_password_hash(%s, %s, %s)", (user_id, stored, password_hash)
        ).fetchone()
    return bool(row and row[0])


def account_role(user_id: UUID) -> str | None:
    """The account's role now, or None once the account is deleted. Read as the
    account itself, with a user's rights: row-level security shows it its own row."""
    with readonly_session(user_id=user_id, role="user") as conn:
        row = conn.execute("SELECT role FROM public.users WHERE id = %s", (user_id,)).fetchone()
    return None if row is None else str(row[0])


# The key and, in the same statement (one round trip per request, as before), its
# rotation chain: the first key and the smallest live limit (sql/011).
_API_KEY_LOOKUP = (
    "SELECT k.key_id, k.owner_id, k.secret_hash, k.scopes, k.rate_limit_per_minute, "
    "k.expires_at, k.revoked_at, k.owner_role, c.first_key_id, c.rate_limit_per_minute "
    "FROM auth.api_key_for_lookup(%s) AS k "
    "LEFT JOIN LATERAL auth.api_key_chain(k.key_id) AS c ON true"
)
# The same without the chain, for a database sql/011 has not reached. A deploy runs
# the migration before it updates the API (cdk/stack.py); this keeps the key check
# working on a database restored from a snapshot taken before it.
_API_KEY_LOOKUP_WITHOUT_CHAIN = (
    "SELECT key_id, owner_id, secret_hash, scopes, rate_limit_per_minute, "
    "expires_at, revoked_at, owner_role, NULL, NULL FROM auth.api_key_for_lookup(%s)"
)


UNDEFINED_FUNCTION = "42883"


def api_key_record(key_id: str) -> ApiKeyRecord | None:
    from functions.shared.db.sessions import DatabaseSchemaBehind

    try:
        with readonly_session() as conn:
            row = conn.execute(_API_KEY_LOOKUP, (key_id,)).fetchone()
    except DatabaseSchemaBehind as exc:
        if exc.sqlstate != UNDEFINED_FUNCTION:
            raise
        logger.warning("auth.api_key_chain is missing (sql/011); the key counts alone")
        with readonly_session() as conn:
            row = conn.execute(_API_KEY_LOOKUP_WITHOUT_CHAIN, (key_id,)).fetchone()
    if row is None:
        return None
    return ApiKeyRecord(
        key_id=row[0],
        owner_id=row[1],
        secret_hash=bytes(row[2]),
        scopes=frozenset(row[3] or ()),
        rate_limit_per_minute=int(row[4]),
        expires_at=row[5],
        revoked_at=row[6],
        owner_role=row[7],
        chain_first_key_id=row[8],
        chain_rate_limit_per_minute=None if row[9] is None else int(row[9]),
    )


def _key_row(row: Any) -> dict[str, Any]:
    return {
        "key_id": row[0],
        "owner_id": row[1],
        "scopes": sorted(row[2] or ()),
        "rate_limit_per_minute": row[3],
        "created_at": row[4],
        "expires_at": row[5],
        "revoked_at": row[6],
        "rotated_from": row[7],
    }


def insert_api_key(
    actor: Caller,
    new_key: NewApiKey,
    *,
    owner_id: UUID,
    scopes: list[str],
    rate_limit_per_minute: int,
    expires_at: datetime | None,
    client_token: str | None = None,
    audit_row: AuditRow,
) -> dict[str, Any]:
    """The new key's row. With `client_token`, a key this owner already got with
    that token is a Conflict naming it: nothing is written, the audit row included."""
    import psycopg

    try:
        with write_session(user_id=actor.user_id, role=actor.role) as conn:
            owner = conn.execute(
                "SELECT role FROM public.users WHERE id = %s", (owner_id,)
            ).fetchone()
            if owner is None:
                raise NotFound("The owner does not exist.")
            # The admin chain refuses such a key only while its owner is not an admin:
            # issued to a user, it would turn into an admin credential on promotion.
            if SCOPE_ADMIN in scopes and owner[0] != "admin":
                raise Conflict("Only an admin's key may have the admin scope.")
            _hold_key_order_for_insert(conn)
            row = conn.execute(
                "INSERT INTO public.api_keys (key_id, owner_id, secret_hash, scopes, "
                "rate_limit_per_minute, expires_at, client_token) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "RETURNING key_id, owner_id, scopes, rate_limit_per_minute, created_at, "
                "expires_at, revoked_at, rotated_from",
                (
                    new_key.key_id,
                    owner_id,
                    new_key.secret_hash,
                    scopes,
                    rate_limit_per_minute,
                    expires_at,
                    client_token,
                ),
            ).fetchone()
            audit_row(conn)
    except psycopg.errors.ForeignKeyViolation as exc:
        raise NotFound("The owner does not exist.") from exc
    except psycopg.errors.UniqueViolation as exc:
        if client_token is None or exc.diag.constraint_name != _ONE_KEY_PER_CLIENT_TOKEN:
            raise
        raise KeyAlreadyIssued(_issued_with_token(actor, owner_id, client_token)) from exc
    return _key_row(_returned(row))


class KeyAlreadyIssued(Conflict):
    """A create sent again with its client_token: the caller's own retry, answered with
    the key the first create issued (whose audit row records it)."""


# sql/019: one key per owner and client_token.
_ONE_KEY_PER_CLIENT_TOKEN = "api_keys_one_per_client_token"  # noqa: S105  # nosec B105 - an index


def _issued_with_token(actor: Caller, owner_id: UUID, client_token: str) -> str:
    """What to tell an admin whose create was sent again: which key the first one
    issued, and the way on, since its secret cannot be shown again."""
    with write_session(user_id=actor.user_id, role=actor.role) as conn:
        found = conn.execute(
            "SELECT key_id FROM public.api_keys WHERE owner_id = %s AND client_token = %s",
            (owner_id, client_token),
        ).fetchone()
    issued = f" ({found[0]})" if found is not None else ""
    return (
        f"A key was already created with this client_token{issued}. Its secret was "
        "shown once: if that answer never arrived, revoke the key and create another "
        "with a new token."
    )


def list_api_keys(
    actor: Caller, owner_id: UUID | None, *, limit: int, after: tuple[datetime, str] | None
) -> list[dict[str, Any]]:
    """At most `limit` keys in (created_at, key_id) order, after `after` if given."""
    after_at, after_id = after if after is not None else (None, None)
    with readonly_session(user_id=actor.user_id, role=actor.role) as conn:
        # Keys being inserted commit before this page is read, and a key inserted
        # later is stamped after it: no key lands behind a cursor already handed out.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_KEY_LIST_ORDER_LOCK,))
        rows = conn.execute(
            "SELECT key_id, owner_id, scopes, rate_limit_per_minute, created_at, expires_at, "
            "revoked_at, rotated_from FROM public.api_keys "
            "WHERE (%(owner)s::uuid IS NULL OR owner_id = %(owner)s::uuid) "
            "AND (%(after_at)s::timestamptz IS NULL "
            "OR (created_at, key_id) > (%(after_at)s::timestamptz, %(after_id)s::text)) "
            "ORDER BY created_at, key_id LIMIT %(limit)s",
            {"owner": owner_id, "after_at": after_at, "after_id": after_id, "limit": limit},
        ).fetchall()
    return [_key_row(row) for row in rows]


def rotate_api_key(
    actor: Caller, key_id: str, new_key: NewApiKey, grace: timedelta, audit_row: AuditRow
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Insert the successor and cut the old key's life to `grace`, in one transaction.

    Returns (new key, old key). A revoked or already expired key cannot be rotated:
    rotation keeps a working key working, it does not revive a dead one.
    """
    with write_session(user_id=actor.user_id, role=actor.role) as conn:
        old = conn.execute(
            "SELECT key_id, owner_id, scopes, rate_limit_per_minute, created_at, expires_at, "
            "revoked_at, rotated_from FROM public.api_keys WHERE key_id = %s FOR UPDATE",
            (key_id,),
        ).fetchone()
        if old is None:
            raise NotFound()
        if old[6] is not None or (old[5] is not None and old[5] <= _now(conn)):
            raise Conflict("The key is revoked or expired and cannot be rotated.")
        # Read under the old key's row lock: a concurrent rotation of it has committed
        # its successor by now, or waits for this one.
        successor = conn.execute(
            "SELECT key_id, revoked_at FROM public.api_keys WHERE rotated_from = %s", (key_id,)
        ).fetchone()
        if successor is not None and successor[1] is not None:
            # A key has one successor (sql/009), and a revoked one cannot be rotated:
            # the way on is a key of its own, not a second successor.
            raise Conflict(
                f"The key was already rotated to {successor[0]}, which is revoked; issue "
                "a new key for the owner and revoke this one once its clients use it."
            )
        if successor is not None:
            raise Conflict(
                f"The key was already rotated to {successor[0]}; rotate that key instead."
            )
        # As at issue: an admin-scoped key of an owner who is no longer an admin is dead
        # in the admin chain, and its successor must not be reborn as one for a user.
        if SCOPE_ADMIN in (old[2] or ()):
            owner = conn.execute(
                "SELECT role FROM public.users WHERE id = %s", (old[1],)
            ).fetchone()
            if owner is None or owner[0] != "admin":
                raise Conflict(
                    "The key has the admin scope and its owner is no longer an admin; "
                    "revoke it and issue a key without that scope."
                )
        _hold_key_order_for_insert(conn)
        new = conn.execute(
            "INSERT INTO public.api_keys (key_id, owner_id, secret_hash, scopes, "
            "rate_limit_per_minute, expires_at, rotated_from) "
            "SELECT %s, owner_id, %s, scopes, rate_limit_per_minute, expires_at, key_id "
            "FROM public.api_keys WHERE key_id = %s "
            "RETURNING key_id, owner_id, scopes, rate_limit_per_minute, created_at, expires_at, "
            "revoked_at, rotated_from",
            (new_key.key_id, new_key.secret_hash, key_id),
        ).fetchone()
        retired = conn.execute(
            "UPDATE public.api_keys SET expires_at = "
            "least(coalesce(expires_at, 'infinity'::timestamptz), now() + %s) "
            "WHERE key_id = %s "
            "RETURNING key_id, owner_id, scopes, rate_limit_per_minute, created_at, expires_at, "
            "revoked_at, rotated_from",
            (grace, key_id),
        ).fetchone()
        audit_row(conn)
    return _key_row(_returned(new)), _key_row(_returned(retired))


# The keys a key was rotated to, and theirs, that still work (live as
# functions/shared/identity/api_keys.py::check_api_key decides it).
_LIVE_SUCCESSORS = (
    "WITH RECURSIVE chain (key_id) AS ("
    " SELECT key_id FROM public.api_keys WHERE rotated_from = %(key_id)s"
    " UNION SELECT k.key_id FROM public.api_keys AS k JOIN chain AS c ON k.rotated_from = c.key_id"
    ") SELECT k.key_id FROM public.api_keys AS k JOIN chain USING (key_id) "
    "WHERE (k.revoked_at IS NULL OR k.revoked_at > now()) "
    "AND (k.expires_at IS NULL OR k.expires_at > now()) "
    "ORDER BY k.created_at, k.key_id"
)


# An advisory lock key ("bs admin key revoke"), held by every revoke.
_ADMIN_KEY_REVOKE_LOCK = 0x627320616B726576

# Whether the key opens the admin chain now (functions/api/middleware/admin_chain.py:
# the admin scope, an owner who is an admin, live as check_key_holder decides it), and
# whether another key does until at least when this one would stop: one cut to a
# rotation's grace window, or expiring sooner, only postpones the lock-out, so revoking
# must never bring the moment no key opens the admin routes closer. The key's row is
# locked for the revoke.
_ADMIN_KEYS_LEFT = (
    "WITH live_admin_keys AS ("
    " SELECT k.key_id, least(coalesce(k.expires_at, 'infinity'::timestamptz),"
    " coalesce(k.revoked_at, 'infinity'::timestamptz)) AS ends_at"
    " FROM public.api_keys AS k JOIN public.users AS u ON u.id = k.owner_id"
    " WHERE u.role = 'admin' AND %(admin_scope)s = ANY(k.scopes)"
    " AND (k.revoked_at IS NULL OR k.revoked_at > now())"
    " AND (k.expires_at IS NULL OR k.expires_at > now())"
    ") SELECT t.key_id IN (SELECT key_id FROM live_admin_keys),"
    " EXISTS (SELECT 1 FROM live_admin_keys AS o WHERE o.key_id <> t.key_id"
    " AND o.ends_at >= (SELECT ends_at FROM live_admin_keys WHERE key_id = t.key_id))"
    " FROM public.api_keys AS t WHERE t.key_id = %(key_id)s FOR UPDATE OF t"
)


def revoke_api_key(actor: Caller, key_id: str, audit_row: AuditRow) -> dict[str, Any]:
    """Revoke one key; the answer also names the keys it was rotated to that stay
    live (`live_successors`): revoking it does not revoke them. The last key that
    opens the admin routes is refused (Conflict): without one, no admin gets in."""
    with write_session(user_id=actor.user_id, role=actor.role) as conn:
        # Revokes take turns: two admins revoking each other's last keys at once
        # would each see the other's still live and leave none.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADMIN_KEY_REVOKE_LOCK,))
        target = conn.execute(
            _ADMIN_KEYS_LEFT, {"key_id": key_id, "admin_scope": SCOPE_ADMIN}
        ).fetchone()
        if target is None:
            raise NotFound()
        opens_admin_routes, another_does = target
        if opens_admin_routes and not another_does:
            raise Conflict(
                "This is the last live admin key (no other lasts as long): revoked, it "
                "would shut every admin out of the admin API. Rotate it with "
                '{"grace_days": 0} to replace it now, or first issue another admin key '
                "that expires no sooner."
            )
        row = conn.execute(
            "UPDATE public.api_keys SET revoked_at = coalesce(revoked_at, now()) "
            "WHERE key_id = %s "
            "RETURNING key_id, owner_id, scopes, rate_limit_per_minute, created_at, expires_at, "
            "revoked_at, rotated_from",
            (key_id,),
        ).fetchone()
        if row is None:
            raise NotFound()
        successors = [r[0] for r in conn.execute(_LIVE_SUCCESSORS, {"key_id": key_id})]
        audit_row(conn)
    return {**_key_row(row), "live_successors": successors}


def list_users(
    actor: Caller, *, limit: int, after: tuple[datetime, str] | None
) -> list[dict[str, Any]]:
    """At most `limit` users in (created_at, id) order, after `after` if given."""
    after_at, after_id = after if after is not None else (None, None)
    with readonly_session(user_id=actor.user_id, role=actor.role) as conn:
        rows = conn.execute(
            "SELECT id, email, role, created_at FROM public.users "
            "WHERE %(after_at)s::timestamptz IS NULL "
            "OR (created_at, id) > (%(after_at)s::timestamptz, %(after_id)s::uuid) "
            "ORDER BY created_at, id LIMIT %(limit)s",
            {"after_at": after_at, "after_id": after_id, "limit": limit},
        ).fetchall()
    return [{"id": r[0], "email": r[1], "role": r[2], "created_at": r[3]} for r in rows]


def _returned(row: Any) -> Any:
    """The row a RETURNING clause must produce; None would be a database bug."""
    if row is None:
        raise RuntimeError("statement returned no row")
    return row


def _now(conn: Any) -> datetime:
    row = conn.execute("SELECT now()").fetchone()
    return row[0]  # type: ignore[no-any-return]
