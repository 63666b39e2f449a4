"""A caller's watches are bounded: the list is answered whole, and past about 15,000
it would outgrow a Lambda response, leaving its owner unable to read or remove them."""

from __future__ import annotations

import threading
import uuid

from functions.api.recalls.models import MAX_SUBSCRIPTIONS
from tests.integration.api.test_recalls_subscriptions import _as, _subscribe, _user
from tests.support.api import call_api
from tests.support.postgres import MigratedDatabase


def _fill(db: MigratedDatabase, user_id: uuid.UUID, count: int) -> None:
    with db.admin() as conn:
        conn.execute(
            "INSERT INTO subscriptions (user_id, product) "
            "SELECT %s, 'product ' || g FROM generate_series(1, %s) g",
            (user_id, count),
        )


def _count(db: MigratedDatabase, user_id: uuid.UUID) -> int:
    with db.admin() as conn:
        row = conn.execute(
            "SELECT count(*) FROM subscriptions WHERE user_id = %s", (user_id,)
        ).fetchone()
    assert row is not None
    count = row[0]
    assert isinstance(count, int)
    return count


def test_a_watch_past_the_limit_is_409_and_writes_nothing(api_db: MigratedDatabase):
    alice, bob = _user(api_db), _user(api_db)
    _fill(api_db, alice, MAX_SUBSCRIPTIONS - 1)

    assert _subscribe(alice, "Last one").status == 201
    refused = _subscribe(alice, "One too many")

    assert refused.status == 409
    assert "remove one" in refused.json()["error"]["message"]
    assert _count(api_db, alice) == MAX_SUBSCRIPTIONS
    # The limit is per caller: someone else still adds theirs
    assert _subscribe(bob, "One too many").status == 201
    # and removing one makes room again
    first = call_api("GET", "/me/subscriptions", headers=_as(alice)).json()["items"][0]
    assert call_api("DELETE", f"/me/subscriptions/{first['id']}", headers=_as(alice)).status == 204
    assert _subscribe(alice, "One too many").status == 201


def test_simultaneous_watches_cannot_pass_the_limit_together(api_db: MigratedDatabase):
    from functions.api.recalls import queries
    from functions.shared.db import write_session

    alice = _user(api_db)
    _fill(api_db, alice, MAX_SUBSCRIPTIONS - 1)
    results: list[object] = []

    def second() -> None:
        with write_session(user_id=alice) as conn:
            results.append(
                queries.insert_subscription(conn, alice, "Second", None, MAX_SUBSCRIPTIONS)
            )

    # Given one add that has counted and inserted but not committed yet
    with write_session(user_id=alice) as conn:
        assert queries.insert_subscription(conn, alice, "First", None, MAX_SUBSCRIPTIONS)
        other = threading.Thread(target=second)
        other.start()
        # Then a second add by the same caller waits for it rather than counting too
        other.join(0.5)
        assert other.is_alive()
    other.join(10)
    # and, once the first commits, finds the limit reached
    assert results == [None]
    assert _count(api_db, alice) == MAX_SUBSCRIPTIONS
