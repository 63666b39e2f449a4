"""The user-facing data paths against real PostgreSQL: GET /recalls and
/recalls/{id}, /me/subscriptions under row-level security, and the signed feed
webhook's upsert, through the real handler, migrated PostgreSQL and the moto server:
statement timeouts as 503s, another user's rows, text in any form a user or the
feed sends.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Iterator
from datetime import date
from urllib.parse import quote

import pytest

from functions.api.recalls.cursor import encode_cursor
from functions.api.recalls.logic import search_query
from ops.seed import seed_demo_data
from tests.integration.api.test_recalls_subscriptions import _as, _subscribe, _user
from tests.integration.identity.conftest import IdentityWorld, world
from tests.integration.identity.test_webhooks import post, signed_headers
from tests.support.api import ApiResponse, call_api
from tests.support.identity import identity_env, recall_event
from tests.support.postgres import MigratedDatabase

__all__ = ["identity_env", "world"]

# Text a database error would put in an answer if one ever escaped.
LEAK = re.compile(
    r"psycopg|sqlstate|traceback|statement timeout|canceling statement|lock|pg_",
    re.IGNORECASE,
)


@pytest.fixture
def seeded(api_db: MigratedDatabase) -> MigratedDatabase:
    seed_demo_data(api_db.admin_conninfo)
    return api_db


def _deliver(world: IdentityWorld, body: bytes, msg_id: str | None = None) -> ApiResponse:
    """A feed delivery signed with the current webhook secret."""
    response: ApiResponse = post(body, signed_headers(world.webhook_secret, body, msg_id=msg_id))
    return response


def _walk(query: str, cursor: str | None) -> list[str]:
    """The source ids of every page from `cursor` to the end."""
    seen: list[str] = []
    while cursor:
        page = call_api("GET", "/recalls", query=f"{query}&cursor={cursor}").json()
        seen.extend(item["source_id"] for item in page["items"])
        cursor = page["next_cursor"]
    return seen


@pytest.fixture
def short_statement_timeout(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The API's own statement limit at 1 s, so a blocked statement is cancelled fast."""
    from functions.shared.db.pools import close_pools
    from functions.shared.settings import get_settings

    monkeypatch.setenv("DB_STATEMENT_TIMEOUT_SECONDS", "1")
    get_settings.cache_clear()
    close_pools()
    yield
    close_pools()


def _assert_clean_503(response: ApiResponse) -> None:
    assert response.status == 503, (response.status, response.body)
    assert not LEAK.search(response.body), response.body


# --- text forms ---------------------------------------------------------------------------


def test_a_recall_the_feed_wrote_decomposed_is_found_by_the_text_users_type(
    world: IdentityWorld,
):
    """Feeds built on macOS or from some registers send decomposed Unicode (NFD: "e"
    followed by U+0301); keyboards and browsers send composed text (NFC: "é"). Both are
    stored and searched composed: the brand filter and the full-text search compare
    bytes, and once found nothing for a parent searching the brand "Bébé Café"."""
    brand = "Bébé Café"
    body = recall_event(
        source_id="NFD-1",
        brand=unicodedata.normalize("NFD", brand),
        product=unicodedata.normalize("NFD", "Crème bassinet"),
    )
    assert _deliver(world, body).status == 200

    by_brand = call_api("GET", "/recalls", query="brand=" + quote(brand))
    by_words = call_api("GET", "/recalls", query="q=" + quote("crème"))

    assert by_brand.status == by_words.status == 200
    found = (
        [i["source_id"] for i in by_brand.json()["items"]],
        [i["source_id"] for i in by_words.json()["items"]],
    )
    assert found == (["NFD-1"], ["NFD-1"])


# --- timeouts, other users' rows, odd input ----------------------------------------------


def test_a_search_and_a_lookup_cancelled_by_the_statement_timeout_are_503(
    seeded: MigratedDatabase, short_statement_timeout: None
):
    """A statement that outlives the API's limit is cancelled and answered 503
    without database text, and the pool serves the next request."""
    with seeded.admin() as conn:
        conn.autocommit = False
        conn.execute("LOCK TABLE recalls IN ACCESS EXCLUSIVE MODE")
        search = call_api("GET", "/recalls", query="q=crib")
        one = call_api("GET", "/recalls/1")
        conn.rollback()
    _assert_clean_503(search)
    _assert_clean_503(one)
    assert call_api("GET", "/recalls", query="q=crib").status == 200


def test_subscription_writes_and_reads_cancelled_by_the_statement_timeout_are_503(
    api_db: MigratedDatabase, short_statement_timeout: None
):
    """Subscribe waiting on the caller's advisory lock, and list/delete waiting on
    a table lock, are 503s; nothing is written, and the caller's next request works."""
    alice = _user(api_db)
    watched = _subscribe(alice, "Crib").json()
    with api_db.admin() as conn:
        conn.autocommit = False
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (0x5B55, str(alice)))
        added = _subscribe(alice, "Swing")
        conn.rollback()
    with api_db.admin() as conn:
        conn.autocommit = False
        conn.execute("LOCK TABLE subscriptions IN ACCESS EXCLUSIVE MODE")
        listed = call_api("GET", "/me/subscriptions", headers=_as(alice))
        deleted = call_api("DELETE", f"/me/subscriptions/{watched['id']}", headers=_as(alice))
        conn.rollback()
    for response in (added, listed, deleted):
        _assert_clean_503(response)
    items = call_api("GET", "/me/subscriptions", headers=_as(alice)).json()["items"]
    assert [i["product"] for i in items] == ["Crib"]


def test_a_feed_upsert_cancelled_by_the_statement_timeout_is_503_and_its_retry_applies(
    world: IdentityWorld, short_statement_timeout: None
):
    """The upsert waiting on the recall's row lock is a 503 and releases the
    webhook id, so the sender's retry of the same message is applied, not a replay."""
    assert _deliver(world, recall_event()).status == 200
    update = recall_event(kind="recall.updated", remedy="Repair kit")
    with world.db.admin() as conn:
        conn.autocommit = False
        conn.execute("SELECT id FROM recalls FOR UPDATE")
        blocked = _deliver(world, update, msg_id="msg_blocked")
        conn.rollback()
    _assert_clean_503(blocked)
    retried = _deliver(world, update, msg_id="msg_blocked")
    assert retried.status == 200, retried.body
    assert world.query("SELECT remedy FROM recalls") == [("Repair kit",)]


def test_with_real_tokens_no_user_or_admin_reads_or_deletes_anothers_subscription(
    world: IdentityWorld,
):
    """Through the real identity layer (JWTs, test headers off), another user and
    an admin see an empty list and a 404 for the owner's id in either letter case; a
    test identity header beside a real token changes nothing."""
    alice = world.create_user("alice@example.com")
    bob = world.create_user("bob@example.com")
    admin = world.create_user("root@example.com", role="admin")
    as_alice = {"Authorization": f"Bearer {world.token(alice)}"}
    others = [
        {"Authorization": f"Bearer {world.token(bob)}"},
        {"Authorization": f"Bearer {world.token(admin, 'admin')}"},
        {"Authorization": f"Bearer {world.token(bob)}", "X-Test-User-Id": str(alice)},
    ]
    created = call_api("POST", "/me/subscriptions", headers=as_alice, json_body={"product": "Crib"})
    assert created.status == 201
    sid = created.json()["id"]
    for headers in others:
        assert call_api("GET", "/me/subscriptions", headers=headers).json()["items"] == []
        for spelling in (sid, sid.upper()):
            gone = call_api("DELETE", f"/me/subscriptions/{spelling}", headers=headers)
            assert gone.status == 404
    assert world.query("SELECT count(*) FROM subscriptions") == [(1,)]


VALID_TEXT = [
    'O\'Brien "Sleep & Play" yard',
    'Bassinet 36" x 18" -- white',
    "Café crème 🍼 bottle",
    "👶🏽‍🍼 " * 20,
    "中文 婴儿床",
    "Graco® SnugRide® 35",
    "Baby's 1st Rocker (model #123)",
    "crib; drop-side rail",
    "2-in-1 crib\\bassinet",
    '"drop side" -"mesh" or x:* & !y | (z)',
]


@pytest.mark.parametrize("text", VALID_TEXT)
def test_valid_text_with_quotes_accents_and_emoji_is_searched_and_watched(
    seeded: MigratedDatabase, text: str
):
    """Searches (q, brand) and a watch with such text succeed."""
    assert call_api("GET", "/recalls", query="q=" + quote(text)).status == 200
    assert call_api("GET", "/recalls", query="brand=" + quote(text[:100])).status == 200
    created = _subscribe(_user(seeded), text, text[:100])
    assert created.status == 201, created.body
    assert created.json()["product"] == text.strip()


@pytest.mark.parametrize(
    "query",
    [
        "q=a&q=b",
        "cursor=",
        "limit=1&limit=2",
        "since=0000-01-01",
        "q=%00",
        "q=%ED%A0%80",
        "q=" + "%F0%9F%8D%BC" * 201,
        "cursor=" + encode_cursor(date(9999, 12, 31), 2**63 - 1, search_query(None, None, None)),
        "cursor=" + encode_cursor(date(1, 1, 1), 1, search_query(None, None, None)),
        "q=crib&brand=%C3%A9&since=0001-01-01",
    ],
)
def test_odd_search_input_is_never_a_5xx(seeded: MigratedDatabase, query: str):
    """Repeated parameters, empty cursors, invalid UTF-8, overlong emoji runs and
    cursors at the ends of the date and id ranges are answered 200 or 4xx."""
    response = call_api("GET", "/recalls", query=query)
    assert response.status < 500, response.body
    assert not LEAK.search(response.body)


@pytest.mark.parametrize("raw", ['"\\ud800"', '"Sleeper \\udfff"', '"crib\\u0000"'])
def test_feed_text_no_database_can_store_is_a_4xx(world: IdentityWorld, raw: str):
    """A signed delivery whose product is a lone surrogate or holds NUL is refused
    with a 4xx (not a 500 the sender would retry forever) and stores nothing."""
    body = recall_event(product="PLACEHOLDER").replace(b'"PLACEHOLDER"', raw.encode())
    response = _deliver(world, body, msg_id=f"msg_{uuid.uuid4().hex}")
    assert 400 <= response.status < 500, response.body
    assert world.recall_count() == 0


@pytest.mark.parametrize(
    ("rename", "restore"),
    [
        (
            "ALTER TABLE recalls RENAME COLUMN hazard TO hazard_before",
            "ALTER TABLE recalls RENAME COLUMN hazard_before TO hazard",
        ),
        (
            "ALTER TABLE recalls RENAME TO recalls_before",
            "ALTER TABLE recalls_before RENAME TO recalls",
        ),
    ],
    ids=["column", "table"],
)
def test_a_database_behind_the_code_is_503_and_logs_what_to_run(
    seeded: MigratedDatabase, caplog: pytest.LogCaptureFixture, rename: str, restore: str
):
    """A function deployed before its migration ran (or a database restored from an
    old snapshot) lacks a column or table the code reads. The caller gets the clean
    503 of any database outage, not a 500, and the log says what is missing and that
    `migrate` has not been applied, so on-call is not left reading a stack trace."""
    from tests.support.logs import json_log_lines

    with seeded.admin() as conn:
        conn.execute(rename)
    try:
        response = call_api("GET", "/recalls", query="q=crib")
    finally:
        with seeded.admin() as conn:
            conn.execute(restore)
    _assert_clean_503(response)
    behind = [line for line in json_log_lines(caplog) if "schema" in line["message"]]
    assert [line["level"] for line in behind] == ["ERROR"]
    assert "migrat" in behind[0]["message"]
    assert behind[0]["sqlstate"] in ("42703", "42P01")
    assert "hazard" in behind[0]["missing"] or "recalls" in behind[0]["missing"]
    assert call_api("GET", "/recalls", query="q=crib").status == 200
