"""What a watch's product and brand are: one watch per product however it is typed,
names that show something, and the length bounds on what is stored.

Given a caller who watches a product, when the same product comes again in another
case, with other spacing, or with an invisible character around it, then it is the
same watch (409), as the recall search, which matches brands case-insensitively and
words whatever their spacing, would treat it."""

from __future__ import annotations

import threading
import uuid

import pytest

from functions.api.recalls.models import MAX_SUBSCRIPTIONS
from tests.integration.api.test_recalls_subscriptions import _as, _subscribe, _user
from tests.support.api import call_api
from tests.support.postgres import MigratedDatabase


def _stored(db: MigratedDatabase, user_id: uuid.UUID) -> list[tuple[str, str | None]]:
    with db.admin() as conn:
        rows = conn.execute(
            "SELECT product, brand FROM subscriptions WHERE user_id = %s ORDER BY created_at, id",
            (user_id,),
        ).fetchall()
    return [(str(product), None if brand is None else str(brand)) for product, brand in rows]


@pytest.mark.parametrize(
    ("first", "again"),
    [
        (("Baby gate", None), ("baby gate", None)),
        (("Baby gate", None), ("BABY GATE", None)),
        (("Crème brûlée bowl", None), ("CRÈME BRÛLÉE BOWL", None)),
        (("Baby gate", "Acme"), ("Baby gate", "ACME")),
        (("Baby gate", None), ("Baby  gate", None)),
        (("Baby gate", None), ("Baby\tgate", None)),
        (("Baby gate", None), ("Baby\n gate", None)),
        (("Baby gate", None), ("Baby\u00a0gate", None)),
        (("Baby gate", None), ("\ufeffBaby gate", None)),
        (("Baby gate", None), ("Baby gate\u200b", None)),
        (("Baby gate", "Acme"), ("Baby gate", "\u200eAcme\u200f")),
    ],
)
def test_the_same_product_typed_another_way_is_already_watched(
    api_db: MigratedDatabase,
    first: tuple[str, str | None],
    again: tuple[str, str | None],
):
    alice = _user(api_db)
    assert _subscribe(alice, *first).status == 201

    duplicate = _subscribe(alice, *again)

    assert duplicate.status == 409
    assert duplicate.json()["error"]["message"] == "This product is already watched."
    assert _stored(api_db, alice) == [first]


def test_spacing_inside_a_name_is_stored_as_single_spaces(api_db: MigratedDatabase):
    alice = _user(api_db)
    created = _subscribe(alice, "Drop-side\t\tcrib\r\nmattress", "Nest\u3000 well")
    assert created.status == 201
    assert (created.json()["product"], created.json()["brand"]) == (
        "Drop-side crib mattress",
        "Nest well",
    )
    assert _stored(api_db, alice) == [("Drop-side crib mattress", "Nest well")]


def test_products_and_brands_that_differ_stay_two_watches(api_db: MigratedDatabase):
    alice = _user(api_db)
    for product, brand in [
        ("Baby gate", None),
        ("Baby gate", "Acme"),
        ("Baby gates", None),
        ("Babygate", None),
        # Not the same letters in any case: lower() does not fold ß to ss.
        ("Straße stroller", None),
        ("Strasse stroller", None),
    ]:
        assert _subscribe(alice, product, brand).status == 201
    assert len(_stored(api_db, alice)) == 6


@pytest.mark.parametrize(
    "body",
    [
        {"product": "\u200b"},
        {"product": "\ufeff\u200d"},
        {"product": "\u180e"},
        {"product": "\u3164"},  # Hangul filler: a letter by category, blank on screen
        {"product": "\u2800\u2800"},  # the blank braille pattern
        {"product": "\u202e\u202c"},
        {"product": "crib", "brand": "\u200b"},
        {"product": "crib", "brand": "\u00ad"},
    ],
)
def test_a_name_that_shows_nothing_is_422_and_nothing_is_written(
    api_db: MigratedDatabase, body: dict[str, str]
):
    alice = _user(api_db)

    refused = call_api("POST", "/me/subscriptions", headers=_as(alice), json_body=body)

    assert refused.status == 422
    field = "body.brand" if "brand" in body else "body.product"
    assert refused.json()["error"]["fields"] == [field]
    # The refusal names the field and the kind of problem, never the text sent
    assert "\\u" not in refused.body
    assert _stored(api_db, alice) == []


@pytest.mark.parametrize(
    ("field", "limit"), [("product", 200), ("brand", 100)], ids=["product", "brand"]
)
def test_the_length_bound_holds_for_the_text_stored(
    api_db: MigratedDatabase, field: str, limit: int
):
    """U+FB2C is one character as sent and three in composed form (NFC), which is
    what is stored: 200 of them sent were 600 stored, past the documented maximum."""
    alice = _user(api_db)
    grows = "\ufb2c" * limit
    body = {"product": "crib", field: grows}

    refused = call_api("POST", "/me/subscriptions", headers=_as(alice), json_body=body)

    assert refused.status == 422
    assert refused.json()["error"]["problems"] == [
        {"field": f"body.{field}", "problem": "of the wrong length"}
    ]
    assert _stored(api_db, alice) == []
    # At the bound, in a form composition keeps as it is, the watch is taken
    exact = {"product": "crib", field: "\u05e9" * limit}
    assert call_api("POST", "/me/subscriptions", headers=_as(alice), json_body=exact).status == 201


def test_simultaneous_watches_of_one_product_in_two_cases_make_one(api_db: MigratedDatabase):
    """Two connections, each adding the product in its own case at the same time: the
    second waits for the first (the per-caller lock) and then finds it watched."""
    from functions.api.recalls import queries
    from functions.shared.db import write_session

    alice = _user(api_db)
    outcomes: list[object] = []

    def second() -> None:
        try:
            with write_session(user_id=alice) as conn:
                queries.insert_subscription(conn, alice, "CRIB", None, MAX_SUBSCRIPTIONS)
        except queries.AlreadyWatched as exc:
            outcomes.append(exc)

    # Given one add that has inserted but not committed yet
    with write_session(user_id=alice) as conn:
        assert queries.insert_subscription(conn, alice, "Crib", None, MAX_SUBSCRIPTIONS)
        other = threading.Thread(target=second)
        other.start()
        other.join(0.5)
        assert other.is_alive()
    other.join(10)

    # Then one watch is stored: the second add, once the first commits, is refused
    assert _stored(api_db, alice) == [("Crib", None)]
    assert [type(outcome) for outcome in outcomes] == [queries.AlreadyWatched]


def test_a_duplicate_at_the_limit_is_named_as_a_duplicate(api_db: MigratedDatabase):
    alice = _user(api_db)
    with api_db.admin() as conn:
        conn.execute(
            "INSERT INTO subscriptions (user_id, product) "
            "SELECT %s, 'product ' || g FROM generate_series(1, %s) g",
            (alice, MAX_SUBSCRIPTIONS),
        )

    refused = _subscribe(alice, "PRODUCT 7")

    assert refused.status == 409
    assert refused.json()["error"]["message"] == "This product is already watched."
