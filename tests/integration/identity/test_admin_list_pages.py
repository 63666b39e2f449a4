"""GET /admin/users and GET /admin/api-keys a page at a time: both lists only grow,
and one answer holding all of them would pass the 6 MB a Lambda function may return
(API Gateway's 502, the admin unable to find a key to revoke)."""

from __future__ import annotations

import base64
import json
import threading
import time

import psycopg
import pytest

from functions.api.admin.pages import MAX_ADMIN_PAGE_SIZE, encode_cursor
from functions.api.admin.users import LIST_QUERY
from tests.integration.identity.conftest import ADMIN_IP
from tests.support.api import call_api

# What Lambda lets a synchronous invocation return.
LAMBDA_RESPONSE_LIMIT_BYTES = 6 * 1024 * 1024


@pytest.fixture
def admin_headers(world):
    return world.admin_headers(world.create_user("root@example.com", role="admin"))


def listed(headers, path, query=""):
    return call_api("GET", path, headers=headers, query=query, source_ip=ADMIN_IP)


def walk(headers, path, field, limit, extra=""):
    """Every page of a list, following next_cursor; the items and the page sizes."""
    items, sizes, cursor = [], [], None
    while True:
        query = f"limit={limit}{extra}" + (f"&cursor={cursor}" if cursor else "")
        response = listed(headers, path, query)
        assert response.status == 200, response.body
        page = response.json()
        items += page[field]
        sizes.append(len(page[field]))
        cursor = page["next_cursor"]
        if cursor is None:
            return items, sizes
        assert len(sizes) < 1000, "the cursor does not advance"


def test_users_are_listed_in_pages_each_once_in_creation_order(world, admin_headers):
    # Rows inserted by one statement share created_at: the id orders them
    world.execute(
        "INSERT INTO users (email, password_hash, role) SELECT "
        "'parent.' || n || '@example.com', 'x', 'user' FROM generate_series(1, 9) AS n"
    )
    items, sizes = walk(admin_headers, "/admin/users", "users", limit=4)
    assert sizes == [4, 4, 2]
    keys = [(item["created_at"], item["id"]) for item in items]
    assert len(set(keys)) == 10
    assert [item["id"] for item in items] == [
        str(row[0]) for row in world.query("SELECT id FROM users ORDER BY created_at, id")
    ]


def test_api_keys_are_listed_in_pages_and_by_owner(world, admin_headers):
    partner = world.create_user("partner@example.com")
    for _ in range(5):
        world.create_key(partner)
    items, sizes = walk(admin_headers, "/admin/api-keys", "keys", limit=2)
    assert sizes == [2, 2, 2]  # the admin's own key and the partner's five
    assert len({item["key_id"] for item in items}) == 6
    owned, sizes = walk(
        admin_headers, "/admin/api-keys", "keys", limit=2, extra=f"&owner_id={partner}"
    )
    assert sizes == [2, 2, 1]
    assert {item["owner_id"] for item in owned} == {str(partner)}


def test_a_key_issued_between_pages_is_on_a_later_page_and_none_repeats(world, admin_headers):
    partner = world.create_user("partner@example.com")
    for _ in range(3):
        world.create_key(partner)
    first = listed(admin_headers, "/admin/api-keys", "limit=2").json()
    late = world.create_key(partner).split("_")[1]
    rest, _ = [], None
    cursor = first["next_cursor"]
    while cursor:
        page = listed(admin_headers, "/admin/api-keys", f"limit=2&cursor={cursor}").json()
        rest += page["keys"]
        cursor = page["next_cursor"]
    ids = [item["key_id"] for item in first["keys"] + rest]
    assert len(ids) == len(set(ids)) == 5
    assert ids[-1] == late


def _wait_for_lock_waiter(world, pattern: str) -> None:
    """Until a backend of the test database waits on a lock, running `pattern`."""
    for _ in range(400):
        rows = world.query(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type IN ('Lock', 'Advisory') AND query LIKE %s",
            (pattern,),
        )
        if rows[0][0]:
            return
        time.sleep(0.025)
    raise AssertionError("the request never reached the lock")


def _walk_from(headers, cursor):
    seen = []
    while cursor:
        page = listed(headers, "/admin/api-keys", f"limit=3&cursor={cursor}").json()
        seen += [item["key_id"] for item in page["keys"]]
        cursor = page["next_cursor"]
    return seen


def test_a_key_rotated_while_an_admin_pages_through_the_keys_is_on_a_later_page(
    world, admin_headers
):
    """A colleague's rotation waits (for the old key's row, held by another change in
    flight) while the admin reads the first page, then commits: its successor must be
    on a later page of that walk, not stamped behind the cursor by the start of its
    transaction (sql/017)."""
    partner = world.create_user("partner@example.com")
    old = world.create_key(partner).split("_")[1]
    holder = psycopg.connect(world.db.admin_conninfo)
    holder.execute("BEGIN")
    holder.execute("SELECT 1 FROM api_keys WHERE key_id = %s FOR UPDATE", (old,))
    answers = []
    rotation = threading.Thread(
        target=lambda: answers.append(
            call_api(
                "POST",
                f"/admin/api-keys/{old}/rotate",
                headers=admin_headers,
                source_ip=ADMIN_IP,
            )
        )
    )
    rotation.start()
    try:
        _wait_for_lock_waiter(world, "%FOR UPDATE%")
        issued = [world.create_key(partner).split("_")[1] for _ in range(2)]
        first = listed(admin_headers, "/admin/api-keys", "limit=3").json()
        assert [item["key_id"] for item in first["keys"]][-1] == issued[0]
    finally:
        holder.execute("COMMIT")
        holder.close()
        rotation.join(timeout=30)
    [answer] = answers
    assert answer.status == 201, answer.body
    successor = answer.json()["new_key"]["key_id"]
    seen = [item["key_id"] for item in first["keys"]] + _walk_from(
        admin_headers, first["next_cursor"]
    )
    assert len(seen) == len(set(seen))
    assert successor in seen


def test_a_page_waits_for_a_key_being_inserted(world, admin_headers):
    """A key stamped before a page is read but committed after would sort behind that
    page's cursor: the page waits for keys being inserted (their shared lock), so
    such a key is on it."""
    from functions.api.identity.store import _KEY_LIST_ORDER_LOCK

    partner = world.create_user("partner@example.com")
    world.create_key(partner)
    writer = psycopg.connect(world.db.admin_conninfo)
    writer.execute("BEGIN")
    writer.execute("SELECT pg_advisory_xact_lock_shared(%s)", (_KEY_LIST_ORDER_LOCK,))
    writer.execute(
        "INSERT INTO api_keys (key_id, owner_id, secret_hash, scopes) "
        "VALUES ('inflightkey00001', %s, '\\x00', '{recalls:read}')",
        (partner,),
    )
    pages = []
    reader = threading.Thread(
        target=lambda: pages.append(listed(admin_headers, "/admin/api-keys", "limit=50"))
    )
    reader.start()
    try:
        _wait_for_lock_waiter(world, "%pg_advisory_xact_lock%")
        assert not pages, "the page was read while a key was being inserted"
        later = world.create_key(partner).split("_")[1]
    finally:
        writer.execute("COMMIT")
        writer.close()
        reader.join(timeout=30)
    [page] = pages
    ids = [item["key_id"] for item in page.json()["keys"]]
    assert "inflightkey00001" in ids
    assert later not in ids or ids.index(later) > ids.index("inflightkey00001")


def test_a_large_list_answers_one_bounded_page(world, admin_headers):
    partner = world.create_user("partner@example.com")
    world.execute(
        "INSERT INTO users (email, password_hash, role) SELECT "
        "'parent.' || n || '@example.com', 'x', 'user' FROM generate_series(1, 3000) AS n"
    )
    world.execute(
        "INSERT INTO api_keys (key_id, owner_id, secret_hash, scopes) SELECT "
        "substr(md5(n::text), 1, 16), %s, '\\x00'::bytea, ARRAY['recalls:read'] "
        "FROM generate_series(1, 3000) AS n",
        (partner,),
    )
    for path, field in (("/admin/users", "users"), ("/admin/api-keys", "keys")):
        default = listed(admin_headers, path)
        assert len(default.json()[field]) == 100
        assert default.json()["next_cursor"]
        largest = listed(admin_headers, path, f"limit={MAX_ADMIN_PAGE_SIZE}")
        assert len(largest.json()[field]) == MAX_ADMIN_PAGE_SIZE
        assert len(largest.body) < LAMBDA_RESPONSE_LIMIT_BYTES / 20


def _raw_cursor(payload) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("path", "cursor"),
    [
        ("/admin/users", "not-a-cursor"),
        ("/admin/users", _raw_cursor(["2026-01-01T00:00:00+00:00", "not-a-uuid"])),
        (
            "/admin/users",
            _raw_cursor(["2026-01-01T00:00:00", "00000000-0000-4000-8000-000000000000"]),
        ),
        ("/admin/users", _raw_cursor(["yesterday", "00000000-0000-4000-8000-000000000000"])),
        ("/admin/users", _raw_cursor({"after": 1})),
        # A cursor of the user list names no key
        (
            "/admin/api-keys",
            _raw_cursor(["2026-01-01T00:00:00+00:00", "00000000-0000-4000-8000-000000000000"]),
        ),
        ("/admin/api-keys", _raw_cursor(["2026-01-01T00:00:00+00:00", "'; DROP TABLE api_keys"])),
        ("/admin/api-keys", "A" * 129),
    ],
)
def test_a_malformed_cursor_is_a_400_that_echoes_nothing(world, admin_headers, path, cursor):
    response = listed(admin_headers, path, f"cursor={cursor}")
    assert response.status in (400, 422), response.body
    assert cursor not in response.body


@pytest.mark.parametrize(
    "row_id",
    [
        "urn:uuid:00000000-0000-4000-8000-000000000000",
        "uuid:00000000-0000-4000-8000-000000000000",
        "{00000000-0000-4000-8000-000000000000}",
        "00000000000040008000000000000000",
    ],
)
def test_a_user_cursor_names_its_row_in_the_one_spelling_the_list_gives(
    world, admin_headers, row_id
):
    """Python's UUID() reads spellings PostgreSQL's uuid type refuses (`urn:uuid:...`),
    which once reached the query and answered 500. A cursor names its row as the list
    wrote it, lower-case with hyphens; anything else is a tampered cursor."""
    cursor = _raw_cursor(["2026-01-01T00:00:00+00:00", row_id])
    response = listed(admin_headers, "/admin/users", f"cursor={cursor}")
    assert response.status == 400, response.body
    assert response.json()["error"]["message"] == "The cursor is not valid."


@pytest.mark.parametrize("limit", ["0", str(MAX_ADMIN_PAGE_SIZE + 1), "-1", "ten", "1e3"])
def test_a_page_size_out_of_bounds_is_a_422(world, admin_headers, limit):
    for path in ("/admin/users", "/admin/api-keys"):
        assert listed(admin_headers, path, f"limit={limit}").status == 422


def test_a_cursor_from_the_last_row_ends_the_list(world, admin_headers):
    last = world.query("SELECT created_at, id FROM users ORDER BY created_at DESC, id DESC")[0]
    cursor = encode_cursor(last[0], str(last[1]), LIST_QUERY)
    page = listed(admin_headers, "/admin/users", f"cursor={cursor}")
    assert page.status == 200
    assert page.json() == {"users": [], "next_cursor": None}
