"""The app tier writes for a caller, and the audit log stays append-only for it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import errors

from functions.shared.db.migrations import load_migrations
from tests.support.postgres import MigratedDatabase, make_user


def test_any_session_of_the_app_tier_can_append_to_the_audit_log(db: MigratedDatabase):
    # A failed sign-in has no caller yet, and must still be recorded.
    with psycopg.connect(db.tier("app")) as conn:
        conn.execute(
            "INSERT INTO audit_log (actor, action, outcome, source_ip) "
            "VALUES (NULL, 'login', 'failure', '198.51.100.7')"
        )
    with db.admin() as admin:
        assert admin.execute("SELECT count(*) FROM audit_log").fetchone() == (1,)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET outcome = 'ok'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "SELECT * FROM audit_log",
        "ALTER TABLE audit_log DISABLE ROW LEVEL SECURITY",
    ],
)
def test_the_app_user_cannot_change_or_read_back_the_audit_log(
    db: MigratedDatabase, statement: str
):
    with db.admin() as admin:
        admin.execute("INSERT INTO audit_log (action, outcome) VALUES ('login', 'failure')")
    with psycopg.connect(db.tier("app")) as conn:
        # Even a caller with the admin role setting
        conn.execute(
            "SELECT set_config('app.user_id', %s, true), "
            "set_config('app.user_role', 'admin', true)",
            (str(uuid.uuid4()),),
        )
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(statement)
    with db.admin() as admin:
        assert admin.execute("SELECT outcome FROM audit_log").fetchall() == [("failure",)]


def test_the_app_user_cannot_read_password_hashes(db: MigratedDatabase):
    with psycopg.connect(db.tier("app")) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT password_hash FROM users")


def test_every_app_login_carries_the_tier_settings(db: MigratedDatabase):
    for role in db.roles.login_roles("app"):
        with psycopg.connect(db.conninfo(role)) as conn:
            assert conn.execute("SHOW statement_timeout").fetchone() == ("1min",)  # 60 s


def _as_caller(conn: psycopg.Connection, user_id: uuid.UUID) -> None:
    conn.execute(
        "SELECT set_config('app.user_id', %s, true), set_config('app.user_role', 'user', true)",
        (str(user_id),),
    )


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO recalls (id, source_id, product, brand, hazard, remedy, recall_date) "
        "OVERRIDING SYSTEM VALUE SELECT g, 'taken-' || g, 'p', 'b', 'h', 'r', '2024-01-01' "
        "FROM generate_series(1, 50) AS g",
        "INSERT INTO recalls (source_id, product, brand, hazard, remedy, recall_date, "
        "created_at) VALUES ('old', 'p', 'b', 'h', 'r', '2024-01-01', '2001-01-01')",
        "UPDATE recalls SET created_at = '2001-01-01'",
    ],
    ids=["chosen-ids", "backdated-insert", "backdated-update"],
)
def test_the_app_tier_cannot_choose_a_recalls_id_or_creation_time(
    db: MigratedDatabase, statement: str
):
    """The app tier INSERTed and UPDATEd every column of recalls: injected SQL could take
    the ids the sequence hands out next (each later webhook insert then failed on the
    primary key) or backdate a recall. As for audit_log (sql/012), the database assigns
    both now; the API's upsert keeps working (tests/integration/api)."""
    with psycopg.connect(db.tier("app")) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement)


def test_a_key_cannot_name_another_owners_key_as_its_predecessor(db: MigratedDatabase):
    """Under RLS a key is the inserter's own row if owner_id is theirs, yet one naming
    Bob's key as rotated_from joined Bob's rotation chain: Bob's per-minute budget was
    shared with it and capped at its limit (sql/011), and Bob's own rotation refused
    (sql/009, one successor per key)."""
    bob, mallory = make_user(db), make_user(db)
    bobs_key = bob.hex[:12]
    with psycopg.connect(db.tier("app")) as conn:
        _as_caller(conn, mallory)
        with pytest.raises(errors.ForeignKeyViolation):
            conn.execute(
                "INSERT INTO api_keys (key_id, owner_id, secret_hash, scopes, "
                "rate_limit_per_minute, rotated_from) "
                "VALUES ('mallorykey01', %s, '\\x00', '{recalls:read}', 1, %s)",
                (mallory, bobs_key),
            )
    with psycopg.connect(db.tier("readonly")) as conn:
        chain = conn.execute(
            "SELECT first_key_id, rate_limit_per_minute FROM auth.api_key_chain(%s)",
            (bobs_key,),
        ).fetchone()
    assert chain == (bobs_key, 60)


def test_a_key_may_name_its_owners_own_key_as_its_predecessor(db: MigratedDatabase):
    alice = make_user(db)
    with psycopg.connect(db.tier("app")) as conn:
        _as_caller(conn, alice)
        conn.execute(
            "INSERT INTO api_keys (key_id, owner_id, secret_hash, scopes, rotated_from) "
            "VALUES ('alicekey0002', %s, '\\x00', '{recalls:read}', %s)",
            (alice, alice.hex[:12]),
        )
    with psycopg.connect(db.tier("readonly")) as conn:
        chain = conn.execute(
            "SELECT first_key_id FROM auth.api_key_chain('alicekey0002')"
        ).fetchone()
    assert chain == (alice.hex[:12],)


@pytest.mark.parametrize("token", ["short", "x" * 65, "no spaces allowed here", "é" * 20])
def test_a_keys_client_token_has_the_apis_form_in_the_database_too(
    db: MigratedDatabase, token: str
):
    alice = make_user(db)
    with psycopg.connect(db.tier("app")) as conn:
        _as_caller(conn, alice)
        with pytest.raises(errors.CheckViolation):
            conn.execute(
                "INSERT INTO api_keys (key_id, owner_id, secret_hash, scopes, client_token) "
                "VALUES ('alicekey0004', %s, '\\x00', '{recalls:read}', %s)",
                (alice, token),
            )


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE public.api_keys SET revoked_at = NULL WHERE key_id = %s",
        "UPDATE public.api_keys SET revoked_at = now() + interval '1 year' WHERE key_id = %s",
        "UPDATE public.api_keys SET expires_at = NULL WHERE key_id = %s",
        "UPDATE public.api_keys SET expires_at = expires_at + interval '1 year' WHERE key_id = %s",
    ],
    ids=["un-revoke", "revoke-later", "never-expire", "expire-later"],
)
def test_injected_sql_cannot_bring_back_a_revoked_key_or_push_its_expiry_out(
    db: MigratedDatabase, change: str
):
    """On-call revoked a leaked key, or rotated one away (its grace window ends in 7
    days). SQL injected on the app tier, naming its owner as the caller, tries to make
    it work again or for good: the table refuses (sql/025)."""
    alice = make_user(db)
    key = alice.hex[:12]
    with db.admin() as su:
        su.execute(
            "UPDATE public.api_keys SET revoked_at = now(), "
            "expires_at = now() + interval '7 days' WHERE key_id = %s",
            (key,),
        )
        before = su.execute(
            "SELECT revoked_at, expires_at FROM public.api_keys WHERE key_id = %s", (key,)
        ).fetchone()
    with psycopg.connect(db.tier("app")) as conn:
        _as_caller(conn, alice)
        with pytest.raises(errors.CheckViolation):
            conn.execute(change, (key,))
    with db.admin() as su:
        after = su.execute(
            "SELECT revoked_at, expires_at FROM public.api_keys WHERE key_id = %s", (key,)
        ).fetchone()
    assert after == before


def test_a_revocation_repeated_and_an_expiry_brought_closer_still_go_through(
    db: MigratedDatabase,
):
    """What the API itself writes: revoke with coalesce (a repeat keeps the first
    time), and a rotation's least(expiry, now() + grace)."""
    alice = make_user(db)
    key = alice.hex[:12]
    with psycopg.connect(db.tier("app")) as conn:
        _as_caller(conn, alice)
        conn.execute(
            "UPDATE public.api_keys SET expires_at = least(coalesce(expires_at, "
            "'infinity'::timestamptz), now() + interval '7 days') WHERE key_id = %s",
            (key,),
        )
        conn.execute(
            "UPDATE public.api_keys SET expires_at = least(expires_at, now() + interval "
            "'1 day') WHERE key_id = %s",
            (key,),
        )
        conn.execute(
            "UPDATE public.api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = %s",
            (key,),
        )
        first = conn.execute(
            "SELECT revoked_at FROM public.api_keys WHERE key_id = %s", (key,)
        ).fetchone()
        conn.execute(
            "UPDATE public.api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = %s",
            (key,),
        )
        again = conn.execute(
            "SELECT revoked_at FROM public.api_keys WHERE key_id = %s", (key,)
        ).fetchone()
    assert first == again
    assert first is not None
    assert first[0] is not None


def test_the_app_tier_cannot_backdate_a_keys_creation(db: MigratedDatabase):
    alice = make_user(db)
    with psycopg.connect(db.tier("app")) as conn:
        _as_caller(conn, alice)
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO api_keys (key_id, owner_id, secret_hash, scopes, created_at) "
                "VALUES ('alicekey0003', %s, '\\x00', '{recalls:read}', '2001-01-01')",
                (alice,),
            )


@pytest.mark.parametrize(
    "statement",
    [
        # naming itself a fresh caller, as row-level security's check asks
        "INSERT INTO public.users (id, email, password_hash, role) "
        "VALUES ({fresh}, 'mallory@example.com', 'scrypt$chosen', 'admin')",
        "UPDATE public.users SET email = 'mallory@example.com' WHERE id = {me}",
        "DELETE FROM public.users WHERE id = {me}",
    ],
    ids=["mint-an-admin", "change-an-email", "delete-an-account"],
)
def test_the_app_tier_cannot_make_change_or_delete_accounts(db: MigratedDatabase, statement: str):
    """The API has no registration: accounts are an operator's (sql/015). With INSERT of
    `role`, SQL injected on the app tier, naming itself any fresh caller, wrote an
    account with role 'admin' and a hash of its choosing, which outlived every rotation."""
    me, fresh = make_user(db), uuid.uuid4()
    with psycopg.connect(db.tier("app")) as conn:
        _as_caller(conn, fresh if "{fresh}" in statement else me)
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(statement.format(me=f"'{me}'", fresh=f"'{fresh}'"))
    with db.admin() as admin:
        assert admin.execute("SELECT count(*) FROM users WHERE id = %s", (fresh,)).fetchone() == (
            0,
        )


def _as_admin_caller(conn: psycopg.Connection) -> None:
    """What injected SQL can claim: any caller, an admin included."""
    conn.execute(
        "SELECT set_config('app.user_id', %s, true), set_config('app.user_role', 'admin', true)",
        (str(uuid.uuid4()),),
    )


OVERWRITE_ADMIN_HASHES = "UPDATE users SET password_hash = 'y' WHERE role = 'admin'"


def test_the_app_tier_cannot_set_an_admins_password_hash(db: MigratedDatabase):
    """Revoking INSERT was not enough: with UPDATE (password_hash), injected SQL naming
    itself an admin caller found the admins and wrote its own hash over theirs."""
    victim = make_user(db, role="admin")
    with psycopg.connect(db.tier("app")) as conn:
        _as_admin_caller(conn)
        assert (victim,) in conn.execute("SELECT id FROM users WHERE role = 'admin'").fetchall()
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(OVERWRITE_ADMIN_HASHES)
        conn.rollback()
        # The rehash function wants the stored hash, which the tier cannot read...
        _as_admin_caller(conn)
        for guess in ("guess", "", "scrypt$"):
            replaced = conn.execute(
                "SELECT auth.replace_password_hash(%s, %s, 'scrypt$chosen')", (victim, guess)
            ).fetchone()
            assert replaced == (False,)
        conn.rollback()
        # ...directly, or through the lookups that answer a hash for an e-mail
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT password_hash FROM users")
        conn.rollback()
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM auth.user_for_login(%s)", (f"{victim.hex}@example.com",))
    with db.admin() as admin:
        stored = admin.execute("SELECT password_hash FROM users WHERE id = %s", (victim,))
        assert stored.fetchone() == ("x",)


def test_the_sign_in_rehash_replaces_the_hash_it_checked(db: MigratedDatabase):
    me = make_user(db)  # stored hash: 'x'
    with psycopg.connect(db.tier("app")) as conn:
        _as_caller(conn, me)
        stale = conn.execute("SELECT auth.replace_password_hash(%s, 'y', 'scrypt$new')", (me,))
        assert stale.fetchone() == (False,)  # changed meanwhile: left as it is
        done = conn.execute("SELECT auth.replace_password_hash(%s, 'x', 'scrypt$new')", (me,))
        assert done.fetchone() == (True,)
        conn.commit()
    with db.admin() as admin:
        stored = admin.execute("SELECT password_hash FROM users WHERE id = %s", (me,))
        assert stored.fetchone() == ("scrypt$new",)


@pytest.mark.parametrize(
    "updated_at", ["'infinity'", "'-infinity'", "now() + interval '3 hours'"], ids=str
)
def test_the_app_tier_cannot_hold_back_corrections_past_the_bound(
    db: MigratedDatabase, updated_at: str
):
    """upsert_recall applies a feed event only when it is newer than the stored
    updated_at. An app login that set it to 'infinity' made every genuine correction
    of a recall's hazard look stale for good; the table now refuses a time more than
    two hours ahead (sql/015), so a write holds corrections back two hours at most."""
    from functions.api.recalls.queries import upsert_recall

    recall = {
        "source_id": "cpsc-frozen",
        "product": "Crib",
        "brand": "Acme",
        "hazard": "old text",
        "remedy": "old remedy",
        "recall_date": datetime(2024, 1, 1, tzinfo=UTC).date(),
        "description": None,
        "country": None,
        "url": None,
    }
    now = datetime.now(UTC)
    with psycopg.connect(db.tier("app")) as conn:
        upsert_recall(conn, recall, now - timedelta(days=1))
        conn.commit()
        # When injected SQL moves its time
        with pytest.raises(errors.CheckViolation):
            conn.execute(f"UPDATE public.recalls SET updated_at = {updated_at}")  # noqa: S608
        conn.rollback()
        # Then the next real correction still applies
        _, _, applied = upsert_recall(conn, {**recall, "hazard": "strangulation"}, now)
        conn.commit()
    assert applied
    with db.admin() as admin:
        hazard = admin.execute(
            "SELECT hazard FROM public.recalls WHERE source_id = 'cpsc-frozen'"
        ).fetchone()
    assert hazard == ("strangulation",)


def test_a_feed_event_an_hour_ahead_is_still_stored(db: MigratedDatabase):
    """The API accepts an event time up to its webhook tolerance (at most an hour) past
    its clock; the table's bound leaves room for that."""
    from functions.api.recalls.queries import upsert_recall

    recall = {
        "source_id": "cpsc-ahead",
        "product": "Crib",
        "brand": "Acme",
        "hazard": "h",
        "remedy": "r",
        "recall_date": datetime(2024, 1, 1, tzinfo=UTC).date(),
        "description": None,
        "country": None,
        "url": None,
    }
    with psycopg.connect(db.tier("app")) as conn:
        _, _, applied = upsert_recall(conn, recall, datetime.now(UTC) + timedelta(hours=1))
        conn.commit()
    assert applied


def test_recalls_already_frozen_are_released_by_the_migration(db: MigratedDatabase):
    """A row stored with a time past the bound (by injection, or before the API checked
    event times) would fail the new constraint and the deploy: sql/015 sets it to now,
    so the next real event applies. Staged in a transaction that is rolled back."""
    (migration,) = [m for m in load_migrations() if m.name.startswith("015_")]
    with db.admin() as conn, conn.transaction(force_rollback=True):
        conn.execute("ALTER TABLE recalls DROP CONSTRAINT recalls_updated_at_in_range")
        conn.execute(
            "INSERT INTO recalls (source_id, product, brand, hazard, remedy, recall_date, "
            "updated_at) VALUES ('frozen', 'Crib', 'A', 'h', 'r', '2024-01-01', 'infinity'), "
            "('ahead', 'Crib', 'A', 'h', 'r', '2024-01-01', now() + interval '30 days'), "
            "('fine', 'Crib', 'A', 'h', 'r', '2024-01-01', '2024-01-02')"
        )
        conn.execute(migration.render(db.roles).encode())
        conn.execute(migration.render(db.roles).encode())  # re-applying changes nothing
        rows = conn.execute(
            "SELECT source_id, updated_at <= now() FROM recalls "
            "WHERE source_id IN ('frozen', 'ahead', 'fine') ORDER BY source_id"
        ).fetchall()
        assert rows == [("ahead", True), ("fine", True), ("frozen", True)]
        fine = conn.execute("SELECT updated_at FROM recalls WHERE source_id = 'fine'").fetchone()
        assert fine == (datetime(2024, 1, 2, tzinfo=UTC),)
        with pytest.raises(errors.CheckViolation):
            conn.execute("UPDATE recalls SET updated_at = 'infinity' WHERE source_id = 'fine'")


def test_the_app_tier_runs_no_pre_authentication_lookup(db: MigratedDatabase):
    """The key check reads a key's rotation chain on the read-only tier; the app tier
    kept the right to run it (sql/011) after losing the other lookups (sql/015)."""
    for lookup in (
        "SELECT * FROM auth.api_key_chain('anykey000001')",
        "SELECT * FROM auth.api_key_for_lookup('anykey000001')",
        "SELECT * FROM auth.user_for_login('parent@example.com')",
    ):
        with psycopg.connect(db.tier("app")) as conn, pytest.raises(errors.InsufficientPrivilege):
            conn.execute(lookup)
