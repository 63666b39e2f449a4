"""Every date and time the app tier writes is one the API can read (sql/023).

PostgreSQL's date and timestamptz hold 'infinity', years past 9999 and BC dates,
which Python's types do not: one such row failed every fetch that reached it, so SQL
injected on the app tier's connection could turn the public search, an account's
watch list or a key into 500s for good."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from psycopg import errors

from functions.shared.db.migrations import load_migrations
from ops.seed import seed_demo_data
from tests.support.api import call_api
from tests.support.postgres import MigratedDatabase

# Values PostgreSQL holds and Python's date types cannot load.
UNLOADABLE = ["infinity", "-infinity", "10000-01-01", "0044-03-15 BC"]


def _as_caller(conn: psycopg.Connection, user_id: uuid.UUID, role: str = "user") -> None:
    """What injected SQL can do: name any caller (row-level security is no boundary)."""
    conn.execute(
        "SELECT set_config('app.user_id', %s, true), set_config('app.user_role', %s, true)",
        (str(user_id), role),
    )


@pytest.mark.parametrize("day", UNLOADABLE)
def test_the_app_tier_cannot_store_a_recall_date_the_search_cannot_read(
    api_db: MigratedDatabase, day: str
):
    seed_demo_data(api_db.admin_conninfo)
    with psycopg.connect(api_db.tier("app")) as conn, pytest.raises(errors.CheckViolation):
        conn.execute(
            "UPDATE public.recalls SET recall_date = %s::date WHERE source_id = 'DEMO-2024-001'",
            (day,),
        )
    for query in ("", "q=crib", "limit=100"):
        assert call_api("GET", "/recalls", query=query).status == 200


@pytest.mark.parametrize(
    "day", [date(1899, 12, 31), datetime.now(UTC).date() + timedelta(days=2)], ids=str
)
def test_the_table_holds_recall_dates_to_what_the_feed_accepts(db: MigratedDatabase, day: date):
    """1900-01-01 to tomorrow in UTC (functions/api/recalls/feed.py::_announced): a
    recall dated ahead would head every search until someone deleted it."""
    with psycopg.connect(db.tier("app")) as conn, pytest.raises(errors.CheckViolation):
        conn.execute(
            "INSERT INTO public.recalls (source_id, product, brand, hazard, remedy, "
            "recall_date) VALUES ('ahead', 'Crib', 'A', 'h', 'r', %s)",
            (day,),
        )


def test_tomorrow_in_utc_is_still_a_recall_date(db: MigratedDatabase):
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    with psycopg.connect(db.tier("app")) as conn:
        conn.execute(
            "INSERT INTO public.recalls (source_id, product, brand, hazard, remedy, "
            "recall_date) VALUES ('tomorrow', 'Crib', 'A', 'h', 'r', %s)",
            (tomorrow,),
        )


@pytest.mark.parametrize("moment", UNLOADABLE)
def test_the_app_tier_cannot_plant_a_watch_its_owner_cannot_list(
    api_db: MigratedDatabase, moment: str
):
    """The list is the only place a watch's id is shown: a row it cannot read was one
    its owner could never remove. The app tier inserts only what the API writes."""
    victim = uuid.uuid4()
    with api_db.admin() as conn:
        conn.execute(
            "INSERT INTO users (id, email, password_hash, role) "
            "VALUES (%s, 'victim@example.com', 'x', 'user')",
            (victim,),
        )
    with psycopg.connect(api_db.tier("app")) as conn:
        _as_caller(conn, victim)
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO public.subscriptions (user_id, product, created_at) "
                "VALUES (%s, 'planted', %s::timestamptz)",
                (victim, moment),
            )
    with api_db.admin() as conn, pytest.raises(errors.CheckViolation):
        conn.execute(
            "INSERT INTO public.subscriptions (user_id, product, created_at) "
            "VALUES (%s, 'planted', %s::timestamptz)",
            (victim, moment),
        )
    listed = call_api("GET", "/me/subscriptions", headers={"X-Test-User-Id": str(victim)})
    assert listed.status == 200


@pytest.mark.parametrize("column", ["expires_at", "revoked_at"])
@pytest.mark.parametrize("moment", UNLOADABLE)
def test_the_app_tier_cannot_give_a_key_a_time_its_check_cannot_read(
    db: MigratedDatabase, column: str, moment: str
):
    """Such a key answered 500 to its every request, and the admin key list too."""
    admin = uuid.uuid4()
    with db.admin() as conn:
        conn.execute(
            "INSERT INTO users (id, email, password_hash, role) "
            "VALUES (%s, 'root@example.com', 'x', 'admin')",
            (admin,),
        )
        conn.execute(
            "INSERT INTO api_keys (key_id, owner_id, secret_hash, scopes) "
            "VALUES ('00000000000000aa', %s, %s, %s)",
            (admin, b"\x00" * 32, ["recalls:read"]),
        )
    with psycopg.connect(db.tier("app")) as conn:
        _as_caller(conn, admin, "admin")
        with pytest.raises(errors.CheckViolation):
            conn.execute(
                f"UPDATE public.api_keys SET {column} = %s::timestamptz",  # noqa: S608
                (moment,),
            )


def test_the_app_tier_updates_only_a_keys_expiry_and_revocation(db: MigratedDatabase):
    """Rotation and revocation write expires_at and revoked_at; nothing the API does
    changes a key's scopes or limit."""
    with psycopg.connect(db.tier("app")) as conn:
        _as_caller(conn, uuid.uuid4(), "admin")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("UPDATE public.api_keys SET scopes = ARRAY['admin']")


def test_rows_already_out_of_range_are_brought_in_by_the_migration(db: MigratedDatabase):
    """A row stored before the bound would fail the new constraint and the deploy:
    sql/023 moves it in range, keeping what it meant where anything is left. Staged in
    a transaction that is rolled back."""
    (migration,) = [m for m in load_migrations() if m.name.startswith("023_")]
    owner = uuid.uuid4()
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    with db.admin() as conn, conn.transaction(force_rollback=True):
        conn.execute("ALTER TABLE recalls DROP CONSTRAINT recalls_recall_date_in_range")
        conn.execute("ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_created_at_in_range")
        conn.execute("ALTER TABLE api_keys DROP CONSTRAINT api_keys_times_in_range")
        conn.execute(
            "INSERT INTO recalls (source_id, product, brand, hazard, remedy, recall_date) "
            "VALUES ('ahead', 'C', 'A', 'h', 'r', 'infinity'), "
            "('ancient', 'C', 'A', 'h', 'r', '0044-03-15 BC'), "
            "('fine', 'C', 'A', 'h', 'r', '2024-01-01')"
        )
        conn.execute(
            "INSERT INTO users (id, email, password_hash, role) VALUES (%s, 'o@example.com', "
            "'x', 'user')",
            (owner,),
        )
        conn.execute(
            "INSERT INTO subscriptions (user_id, product, created_at) VALUES "
            "(%s, 'planted', 'infinity'), (%s, 'kept', '2024-01-01T00:00:00Z')",
            (owner, owner),
        )
        conn.execute(
            "INSERT INTO api_keys (key_id, owner_id, secret_hash, scopes, expires_at, "
            "revoked_at) VALUES "
            "('00000000000000a1', %(o)s, %(h)s, %(s)s, 'infinity', NULL), "
            "('00000000000000a2', %(o)s, %(h)s, %(s)s, '0044-03-15 BC', '10000-01-01'), "
            "('00000000000000a3', %(o)s, %(h)s, %(s)s, NULL, '-infinity')",
            {"o": owner, "h": b"\x00" * 32, "s": ["recalls:read"]},
        )

        conn.execute(migration.render(db.roles).encode())
        conn.execute(migration.render(db.roles).encode())  # re-applying changes nothing
        # Lifted for the fix only: forced again, as sql/005 set it.
        forced = conn.execute(
            "SELECT relname, relforcerowsecurity FROM pg_class "
            "WHERE relname IN ('subscriptions', 'api_keys') AND relkind = 'r' ORDER BY relname"
        ).fetchall()
        assert forced == [("api_keys", True), ("subscriptions", True)]

        dates = conn.execute(
            "SELECT source_id, recall_date FROM recalls "
            "WHERE source_id IN ('ahead', 'ancient', 'fine') ORDER BY source_id"
        ).fetchall()
        assert dates == [
            ("ahead", tomorrow),
            ("ancient", date(1900, 1, 1)),
            ("fine", date(2024, 1, 1)),
        ]
        watches = conn.execute(
            "SELECT product, created_at <= now() AND created_at > now() - interval '1 day' "
            "FROM subscriptions ORDER BY product"
        ).fetchall()
        assert watches == [("kept", False), ("planted", True)]
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        keys = conn.execute(
            "SELECT key_id, expires_at, revoked_at FROM api_keys ORDER BY key_id"
        ).fetchall()
        assert keys == [
            ("00000000000000a1", None, None),  # never expires, as before
            ("00000000000000a2", epoch, None),  # expired long ago, as before
            ("00000000000000a3", None, epoch),  # revoked long ago, as before
        ]
