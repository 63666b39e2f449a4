"""GET/POST/DELETE /me/subscriptions through the real handler: the caller's own
watched products, scoped by the database's RLS (the caller comes from the test-only
identity headers until the identity layer fills it)."""

from __future__ import annotations

import uuid

import pytest

from tests.support.api import ApiResponse, call_api
from tests.support.postgres import MigratedDatabase


def _user(db: MigratedDatabase) -> uuid.UUID:
    user_id = uuid.uuid4()
    with db.admin() as conn:
        conn.execute(
            "INSERT INTO users (id, email, password_hash, role) VALUES (%s, %s, 'x', 'user')",
            (user_id, f"{user_id.hex}@example.com"),
        )
    return user_id


def _as(user_id: uuid.UUID) -> dict[str, str]:
    return {"X-Test-User-Id": str(user_id)}


def _subscribe(user_id: uuid.UUID, product: str, brand: str | None = None) -> ApiResponse:
    body: dict[str, object] = {"product": product}
    if brand is not None:
        body["brand"] = brand
    return call_api("POST", "/me/subscriptions", headers=_as(user_id), json_body=body)


def test_a_caller_adds_lists_and_removes_their_subscriptions(api_db: MigratedDatabase):
    alice = _user(api_db)
    created = _subscribe(alice, "  Drop-side crib ", "Nestwell")
    assert created.status == 201
    subscription = created.json()
    assert (subscription["product"], subscription["brand"]) == ("Drop-side crib", "Nestwell")

    listed = call_api("GET", "/me/subscriptions", headers=_as(alice))
    assert listed.status == 200
    assert [s["id"] for s in listed.json()["items"]] == [subscription["id"]]

    deleted = call_api("DELETE", f"/me/subscriptions/{subscription['id']}", headers=_as(alice))
    assert deleted.status == 204
    again = call_api("DELETE", f"/me/subscriptions/{subscription['id']}", headers=_as(alice))
    assert again.status == 404
    assert call_api("GET", "/me/subscriptions", headers=_as(alice)).json()["items"] == []


def test_watching_the_same_product_twice_is_a_conflict(api_db: MigratedDatabase):
    alice = _user(api_db)
    assert _subscribe(alice, "Baby gate").status == 201
    # A missing brand counts as one value: the second watch without a brand collides too
    duplicate = _subscribe(alice, "Baby gate")
    assert duplicate.status == 409
    assert _subscribe(alice, "Baby gate", "StepStart").status == 201


def test_a_caller_never_sees_or_deletes_another_callers_subscription(api_db: MigratedDatabase):
    alice, bob = _user(api_db), _user(api_db)
    bobs = _subscribe(bob, "Crib mattress").json()
    _subscribe(alice, "Baby swing")

    # Alice's list holds only her own
    alices = call_api("GET", "/me/subscriptions", headers=_as(alice)).json()["items"]
    assert [s["product"] for s in alices] == ["Baby swing"]
    # Deleting Bob's subscription by its exact id looks like an unknown id
    response = call_api("DELETE", f"/me/subscriptions/{bobs['id']}", headers=_as(alice))
    assert response.status == 404
    # And Bob still has it
    bob_list = call_api("GET", "/me/subscriptions", headers=_as(bob)).json()["items"]
    assert [s["id"] for s in bob_list] == [bobs["id"]]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_without_a_caller_the_subscriptions_are_401(api_db: MigratedDatabase, method: str):
    body = {"product": "crib"} if method == "POST" else None
    response = call_api(method, "/me/subscriptions", json_body=body)
    assert response.status == 401


def test_the_test_identity_header_is_ignored_unless_switched_on(
    api_db: MigratedDatabase, monkeypatch: pytest.MonkeyPatch
):
    from functions.shared.settings import get_settings

    alice = _user(api_db)
    monkeypatch.delenv("TEST_CALLER_IDENTITY")
    get_settings.cache_clear()
    response = call_api("GET", "/me/subscriptions", headers=_as(alice))
    assert response.status == 401


def test_the_test_identity_header_is_ignored_outside_the_local_environment(
    api_db: MigratedDatabase, monkeypatch: pytest.MonkeyPatch
):
    """A stray TEST_CALLER_IDENTITY=1 in a deployed function's configuration must not
    let a header name the caller: the switch counts in local mode only, as the
    database URL overrides do."""
    from functions.shared.settings import get_settings

    alice = _user(api_db)
    monkeypatch.setenv("BABYSHIELD_ENV", "aws")
    get_settings.cache_clear()
    assert get_settings().test_caller_identity is True
    response = call_api("GET", "/me/subscriptions", headers=_as(alice))
    assert response.status == 401


@pytest.mark.parametrize(
    "raw_id",
    [
        "not-a-uuid",
        "1",
        "{12345678-1234-5678-1234-567812345678}",
        # 36 characters that UUID() reads, but not the canonical form
        "12345678123456781234567812345678----",
        "1234-5678-1234-5678-1234-567812345678",
    ],
)
def test_a_malformed_subscription_id_is_400(api_db: MigratedDatabase, raw_id: str):
    alice = _user(api_db)
    response = call_api("DELETE", f"/me/subscriptions/{raw_id}", headers=_as(alice))
    assert response.status == 400


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"product": ""},
        {"product": "   "},
        {"product": "x" * 201},
        {"product": "crib", "brand": "b" * 101},
        {"product": "crib", "user_id": str(uuid.uuid4())},
        {"product": 42},
        {"product": ["crib"]},
    ],
)
def test_an_invalid_subscription_body_is_422(api_db: MigratedDatabase, body: dict[str, object]):
    alice = _user(api_db)
    response = call_api("POST", "/me/subscriptions", headers=_as(alice), json_body=body)
    assert response.status == 422
    assert call_api("GET", "/me/subscriptions", headers=_as(alice)).json()["items"] == []


def test_a_caller_whose_user_row_is_gone_is_401_and_nothing_is_written(api_db: MigratedDatabase):
    ghost = uuid.uuid4()
    response = _subscribe(ghost, "Crib")
    assert response.status == 401
    with api_db.admin() as conn:
        assert conn.execute("SELECT count(*) FROM subscriptions").fetchone() == (0,)


@pytest.mark.parametrize("text", ['"\\ud800"', '"crib\\u0000"', '"crib\\u001b[31m"'])
def test_text_no_database_can_store_is_a_4xx_and_nothing_is_written(
    api_db: MigratedDatabase, text: str
):
    alice = _user(api_db)
    body = '{"product": ' + text + "}"
    response = call_api(
        "POST",
        "/me/subscriptions",
        headers={**_as(alice), "Content-Type": "application/json"},
        body=body,
    )
    assert 400 <= response.status < 500
    with api_db.admin() as conn:
        assert conn.execute("SELECT count(*) FROM subscriptions").fetchone() == (0,)
