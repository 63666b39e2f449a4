"""SQL injection in every parameter of every recall and subscription endpoint, through
the real handler: the answer is a normal one or a 4xx, never a database error text,
never rows the literal input would not match, and never another caller's data.

The edge's attack inspection refuses many payloads before any route runs; the last
tests call the logic layer directly with the same payloads, so the binding of every
value is proven even for inputs the edge would have stopped."""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote, urlencode

import psycopg
import pytest

from functions.api.recalls import logic
from functions.api.recalls.models import NewSubscription
from functions.shared.caller import Caller
from functions.shared.errors import DomainError
from ops.seed import DEMO_RECALLS, seed_demo_data
from tests.support.api import ApiResponse, call_api
from tests.support.postgres import MigratedDatabase

PAYLOADS = [
    "' OR '1'='1",
    "' OR 1=1--",
    "1 OR 1=1",
    "1; DROP TABLE recalls; --",
    "'; DELETE FROM subscriptions; --",
    "1' UNION SELECT password_hash, null FROM users--",
    "crib') OR ('a'='a",
    "$$; SELECT pg_sleep(5); $$",
    "\\'; SELECT 1; --",
    "%' AND 1=0 UNION ALL SELECT NULL--",
    "1)) OR ((1=1",
    "crib' || (SELECT current_user) || '",
    '" OR ""="',
    "' AND set_config('app.user_id', 'x', true) IS NOT NULL AND '1'='1",
    "!!crib & | ( ) :* <-> '",
    "admin'--",
]

# Text a database error would put in a response if one ever escaped.
LEAK = re.compile(
    r"syntax error|psycopg|sqlstate|traceback|pg_catalog|relation \"|unterminated"
    r"|invalid input syntax|operator does not exist|permission denied|current transaction",
    re.IGNORECASE,
)


def assert_clean(response: ApiResponse) -> None:
    assert response.status < 500, response.body
    assert not LEAK.search(response.body), response.body


@pytest.fixture
def world(api_db: MigratedDatabase) -> dict[str, object]:
    """Seeded recalls, and two users with one subscription each."""
    seed_demo_data(api_db.admin_conninfo)
    users = {}
    with api_db.admin() as conn:
        for name in ("alice", "bob"):
            user_id = uuid.uuid4()
            conn.execute(
                "INSERT INTO users (id, email, password_hash, role) VALUES (%s, %s, 'x', 'user')",
                (user_id, f"{name}@example.com"),
            )
            conn.execute(
                "INSERT INTO subscriptions (user_id, product) VALUES (%s, %s)",
                (user_id, f"{name}'s crib"),
            )
            users[name] = user_id
    return {"db": api_db, **users}


def _matching(db: MigratedDatabase, q: str) -> set[str]:
    """What a bound-parameter search for the literal text returns: the oracle."""
    with psycopg.connect(db.tier("readonly")) as conn:
        rows = conn.execute(
            "SELECT source_id FROM recalls WHERE search @@ websearch_to_tsquery('english', %s)",
            (q.strip(),),
        ).fetchall()
    return {r[0] for r in rows}


def _bob_untouched(world: dict[str, object]) -> None:
    db = world["db"]
    assert isinstance(db, MigratedDatabase)
    with db.admin() as conn:
        rows = conn.execute(
            "SELECT product FROM subscriptions WHERE user_id = %s", (world["bob"],)
        ).fetchall()
        recalls = conn.execute("SELECT count(*) FROM recalls").fetchone()
    assert rows == [("bob's crib",)]
    assert recalls == (len(DEMO_RECALLS),)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_search_parameters(world: dict[str, object], payload: str):
    db = world["db"]
    assert isinstance(db, MigratedDatabase)
    for name in ("q", "brand", "since", "limit", "cursor"):
        response = call_api("GET", "/recalls", query=urlencode({name: payload, "limit": 100}))
        if name == "limit":
            response = call_api("GET", "/recalls", query=urlencode({"limit": payload}))
        assert_clean(response)
        if response.status == 200:
            items = {i["source_id"] for i in response.json()["items"]}
            if name == "q":
                assert items == _matching(db, payload)
            elif name == "brand":
                # Compared as data: no brand is spelled like an injection
                assert items == set()
            else:
                # A date, a limit or a cursor never parses from an injection string
                pytest.fail(f"{name} was accepted: {sorted(items)[:3]}")
    _bob_untouched(world)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_recall_id_path(world: dict[str, object], payload: str):
    response = call_api("GET", f"/recalls/{quote(payload, safe='')}")
    assert_clean(response)
    assert response.status in (400, 404)
    _bob_untouched(world)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_subscription_body_and_path_and_caller_header(world: dict[str, object], payload: str):
    alice = world["alice"]
    headers = {"X-Test-User-Id": str(alice)}
    for field in ("product", "brand"):
        body = {"product": "Stroller", field: payload}
        response = call_api("POST", "/me/subscriptions", headers=headers, json_body=body)
        assert_clean(response)
        if response.status == 201:
            # Stored literally, as the caller's own row
            assert response.json()[field] == payload.strip()
    deleted = call_api("DELETE", f"/me/subscriptions/{quote(payload, safe='')}", headers=headers)
    assert_clean(deleted)
    assert deleted.status in (400, 404)
    for method in ("GET", "POST"):
        spoofed = call_api(
            method,
            "/me/subscriptions",
            headers={"X-Test-User-Id": payload},
            json_body={"product": "crib"} if method == "POST" else None,
        )
        assert_clean(spoofed)
        assert spoofed.status in (400, 401)
    # Alice's list never shows Bob's row
    listed = call_api("GET", "/me/subscriptions", headers=headers)
    assert listed.status == 200
    assert "bob's crib" not in {s["product"] for s in listed.json()["items"]}
    _bob_untouched(world)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_logic_layer_binds_every_value_even_past_the_edge(
    world: dict[str, object], payload: str
):
    db = world["db"]
    assert isinstance(db, MigratedDatabase)
    alice = world["alice"]
    assert isinstance(alice, uuid.UUID)
    # q: exactly the rows the literal text matches
    page = logic.search_recalls(q=payload, limit=100)
    assert {r.source_id for r in page.items} == _matching(db, payload)
    # brand: no brand is spelled like an injection
    assert logic.search_recalls(brand=payload, limit=100).items == []
    # ids: malformed, never a query
    with pytest.raises(DomainError):
        logic.recall_by_id(payload)
    caller = Caller(user_id=alice, role="user", kind="test")
    with pytest.raises(DomainError):
        logic.unsubscribe(caller, payload)
    # a subscription stores the text as data, for the caller only
    created = logic.subscribe(caller, NewSubscription(product=payload))
    assert created.product == payload.strip()
    mine = logic.subscriptions_of(caller).items
    assert "bob's crib" not in {s.product for s in mine}
    _bob_untouched(world)
