"""A page's cursor continues the query that made it and no other, through the real
handler and PostgreSQL: a cursor sent with other filters (GET /recalls, GET
/admin/api-keys) once answered a page that began in the middle of another result set,
its rows skipped without a word. Now it is a 400 that says to start again."""

from __future__ import annotations

import base64
import json

import pytest

from ops.seed import seed_demo_data
from tests.integration.identity.conftest import ADMIN_IP, IdentityWorld, world
from tests.support.api import ApiResponse, call_api
from tests.support.identity import identity_env
from tests.support.postgres import MigratedDatabase

__all__ = ["identity_env", "world"]

START_AGAIN = "without the cursor"


@pytest.fixture
def seeded(api_db: MigratedDatabase) -> MigratedDatabase:
    seed_demo_data(api_db.admin_conninfo)
    return api_db


def _recalls(query: str) -> ApiResponse:
    return call_api("GET", "/recalls", query=query)


def _ids(response: ApiResponse) -> list[int]:
    assert response.status == 200, response.body
    return [item["id"] for item in response.json()["items"]]


def _refused_as_another_query(response: ApiResponse) -> None:
    assert response.status == 400, response.body
    error = response.json()["error"]
    assert error["code"] == "cursor_mismatch"
    assert START_AGAIN in error["message"]


def _raw_cursor(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def test_a_recall_cursor_sent_with_other_filters_is_refused(seeded: MigratedDatabase):
    # Given the first page of the Nestwell cribs, one recall a page
    first = _recalls("q=crib&brand=Nestwell&limit=1")
    cursor = first.json()["next_cursor"]
    assert cursor
    # When its cursor comes back with another search, brand, date or none of them
    for other in (
        "q=crib",
        "brand=Nestwell",
        "q=stroller&brand=Nestwell",
        "q=crib&brand=Nestwell&since=2024-01-01",
        "",
    ):
        # Then it is refused, not answered with a page of the other result set
        _refused_as_another_query(_recalls(f"{other}&limit=1&cursor={cursor}"))


def test_a_recall_cursor_continues_its_query_however_the_parameters_are_written(
    seeded: MigratedDatabase,
):
    # Given the whole result set and the cursor after its first row
    everything = _ids(_recalls("q=crib&brand=Nestwell&limit=100"))
    assert len(everything) == 3
    cursor = _recalls("q=crib&brand=Nestwell&limit=1").json()["next_cursor"]
    # When the next page asks the same query in another order and spelling
    # (parameters reordered, padded text, a leading zero, another page size)
    for same in (
        "limit=1&brand=Nestwell&q=crib",
        "brand=Nestwell&q=%20crib%20&limit=01",
        "q=crib&brand=Nestwell&limit=5",
    ):
        # Then it continues exactly after the first row
        page = _ids(_recalls(f"{same}&cursor={cursor}"))
        assert page == everything[1 : 1 + len(page)]
        assert page


def test_a_cursor_from_before_cursors_named_their_query_says_start_again(
    seeded: MigratedDatabase,
):
    # Given a cursor in the form issued before this change: (date, id) alone
    row = _recalls("limit=1").json()["items"][0]
    legacy = _raw_cursor([row["recall_date"], row["id"]])
    # When it is sent, Then the answer is the same "start again" 400, never a 500
    _refused_as_another_query(_recalls(f"cursor={legacy}"))


def test_a_cursor_with_a_mangled_query_digest_is_not_valid(seeded: MigratedDatabase):
    row = _recalls("limit=1").json()["items"][0]
    for digest in ("", "not-hex-digest!!", 7, None, "0" * 20):
        response = _recalls(f"cursor={_raw_cursor([row['recall_date'], row['id'], digest])}")
        assert response.status == 400, response.body
        assert response.json()["error"]["message"] == "The cursor is not valid."


@pytest.fixture
def admin_headers(world: IdentityWorld) -> dict[str, str]:
    return world.admin_headers(world.create_user("root@example.com", role="admin"))


def _keys(headers: dict[str, str], query: str) -> ApiResponse:
    return call_api("GET", "/admin/api-keys", headers=headers, query=query, source_ip=ADMIN_IP)


def test_an_api_key_cursor_is_bound_to_its_owner_filter(
    world: IdentityWorld, admin_headers: dict[str, str]
):
    # Given a partner's three keys, listed one a page
    partner = world.create_user("partner@example.com")
    for _ in range(3):
        world.create_key(partner)
    owned = f"owner_id={partner}"
    first = _keys(admin_headers, f"{owned}&limit=1")
    assert first.status == 200, first.body
    cursor = first.json()["next_cursor"]
    # When the cursor comes back without the owner filter, or to the user list
    unfiltered = _keys(admin_headers, f"limit=1&cursor={cursor}")
    users = call_api(
        "GET", "/admin/users", headers=admin_headers, query=f"cursor={cursor}", source_ip=ADMIN_IP
    )
    # Then both refuse it (the user list: its ids are not key ids)
    _refused_as_another_query(unfiltered)
    assert users.status == 400, users.body
    # And the same owner, spelled in capitals and placed last, continues the walk
    again = _keys(admin_headers, f"limit=1&cursor={cursor}&owner_id={str(partner).upper()}")
    assert again.status == 200, again.body
    assert again.json()["keys"][0]["owner_id"] == str(partner)
    assert again.json()["keys"][0]["key_id"] != first.json()["keys"][0]["key_id"]


def test_a_user_cursor_from_before_cursors_named_their_query_says_start_again(
    world: IdentityWorld, admin_headers: dict[str, str]
):
    row = world.query("SELECT created_at, id FROM users ORDER BY created_at, id")[0]
    legacy = _raw_cursor([row[0].isoformat(), str(row[1])])
    response = call_api(
        "GET", "/admin/users", headers=admin_headers, query=f"cursor={legacy}", source_ip=ADMIN_IP
    )
    _refused_as_another_query(response)
