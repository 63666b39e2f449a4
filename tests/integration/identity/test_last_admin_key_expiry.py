"""The last-admin-key guard (functions/api/identity/store.py::revoke_api_key) counts
another admin key only if it keeps the admin routes open at least as long as the key
being revoked would: a key cut to a rotation's grace window, or one that simply expires
sooner, still locks every admin out when it runs out. Revoking never brings that
moment closer."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.identity.conftest import ADMIN_IP
from tests.support.api import call_api


def _key_id(api_key: str) -> str:
    return api_key.split("_", 2)[1]


def _admin(world, email: str, expires_at: datetime | None = None) -> dict[str, Any]:
    admin_id = world.create_user(email, role="admin")
    api_key = world.create_key(admin_id, scopes=("admin",), expires_at=expires_at)
    return {
        "id": admin_id,
        "key_id": _key_id(api_key),
        "headers": _headers(world, admin_id, api_key),
    }


def _headers(world, admin_id, api_key: str) -> dict[str, str]:
    return {"X-API-Key": api_key, "Authorization": f"Bearer {world.token(admin_id, 'admin')}"}


def _call(headers, method, path, body=None):
    return call_api(method, path, headers=headers, json_body=body, source_ip=ADMIN_IP)


def _revoked_at(world, key_id: str) -> Any:
    return world.query("SELECT revoked_at FROM api_keys WHERE key_id = %s", (key_id,))[0][0]


def test_the_successor_of_a_rotation_is_not_revoked_while_only_the_old_key_remains(world):
    # Given the only admin key rotated with the default grace: the old key now expires
    # in days, its successor never does
    admin = _admin(world, "root@example.com")
    rotated = _call(admin["headers"], "POST", f"/admin/api-keys/{admin['key_id']}/rotate")
    assert rotated.status == 201
    successor = rotated.json()["new_key"]
    assert rotated.json()["old_key"]["expires_at"] is not None

    # When the operator revokes the successor (with the old key, still working)
    refused = _call(admin["headers"], "POST", f"/admin/api-keys/{successor['key_id']}/revoke")

    # Then it is refused as the last admin key, and the successor still works
    assert refused.status == 409
    assert "last" in refused.json()["error"]["message"]
    assert _revoked_at(world, successor["key_id"]) is None
    new_headers = _headers(world, admin["id"], successor["api_key"])
    assert _call(new_headers, "GET", "/admin/api-keys").status == 200


def test_the_old_key_in_its_grace_window_is_revoked_while_its_successor_lives(world):
    admin = _admin(world, "root@example.com")
    rotated = _call(admin["headers"], "POST", f"/admin/api-keys/{admin['key_id']}/rotate")
    new_headers = _headers(world, admin["id"], rotated.json()["new_key"]["api_key"])

    revoked = _call(new_headers, "POST", f"/admin/api-keys/{admin['key_id']}/revoke")

    assert revoked.status == 200
    assert _call(new_headers, "GET", "/admin/api-keys").status == 200


def test_another_admin_key_counts_only_if_it_lives_at_least_as_long(world):
    """Keys with an expiry: a key may go while another lasts as long or longer, not
    while every other ends sooner; a key with no expiry needs another with none."""
    now = datetime.now(UTC)
    forever = _admin(world, "forever@example.com")
    month = _admin(world, "month@example.com", expires_at=now + timedelta(days=30))
    week = _admin(world, "week@example.com", expires_at=now + timedelta(days=7))

    # Every other key ends sooner than the one with no expiry.
    refused = _call(week["headers"], "POST", f"/admin/api-keys/{forever['key_id']}/revoke")
    assert refused.status == 409
    assert _revoked_at(world, forever["key_id"]) is None
    # The month's key lasts longer than the week's.
    assert _call(month["headers"], "POST", f"/admin/api-keys/{week['key_id']}/revoke").status == 200
    # With a second key with no expiry, the first may go.
    second = _admin(world, "second-forever@example.com")
    assert (
        _call(second["headers"], "POST", f"/admin/api-keys/{forever['key_id']}/revoke").status
        == 200
    )


def test_a_key_that_ends_with_the_guarded_one_counts(world):
    """Two keys that end at the same moment: either may go, the other keeps the admin
    routes open exactly as long."""
    ends = datetime.now(UTC) + timedelta(days=10)
    first = _admin(world, "first@example.com", expires_at=ends)
    second = _admin(world, "second@example.com", expires_at=ends)

    assert (
        _call(first["headers"], "POST", f"/admin/api-keys/{second['key_id']}/revoke").status == 200
    )
    assert (
        _call(first["headers"], "POST", f"/admin/api-keys/{first['key_id']}/revoke").status == 409
    )


def _wait_for_lock_waiters(conn, count: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).fetchone()
        if row is not None and row[0] >= count:
            return
        time.sleep(0.02)
    raise AssertionError("the revokes never queued on the revoke lock")


@pytest.mark.parametrize("old_key_in_grace", [False, True], ids=["two-keys", "and-a-graced-key"])
def test_two_revokes_queued_at_once_leave_a_key_that_lasts(world, old_key_in_grace):
    """Two admins revoke each other's key while both transactions have begun and wait
    on the revoke lock (held here until both queue): they take turns and the second is
    refused. A third admin key in a rotation's grace window does not make the second
    revoke safe. Run through the store, not the handler: the resolver keeps the current
    request on the app, so two requests in threads of one process would mix (Lambda,
    and the local stack's server, run one request at a time per process); the test
    that sent both through the handler failed about one run in ten that way."""
    from functions.api.identity import store
    from functions.shared.caller import Caller
    from functions.shared.errors import Conflict

    first = _admin(world, "first@example.com")
    second = _admin(world, "second@example.com")
    if old_key_in_grace:
        _admin(world, "graced@example.com", expires_at=datetime.now(UTC) + timedelta(days=7))
    outcomes: list[str] = []

    def revoke(actor: dict[str, Any], target: dict[str, Any]) -> None:
        caller = Caller(user_id=actor["id"], role="admin", kind="jwt")
        try:
            store.revoke_api_key(caller, target["key_id"], audit_row=lambda conn: None)
            outcomes.append("revoked")
        except Conflict:
            outcomes.append("refused")

    threads = [
        threading.Thread(target=revoke, args=(first, second)),
        threading.Thread(target=revoke, args=(second, first)),
    ]
    with world.db.admin() as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (store._ADMIN_KEY_REVOKE_LOCK,))
        for thread in threads:
            thread.start()
        _wait_for_lock_waiters(holder, 2)
        holder.execute("SELECT pg_advisory_unlock(%s)", (store._ADMIN_KEY_REVOKE_LOCK,))
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["refused", "revoked"]
    revoked = [_revoked_at(world, admin["key_id"]) is not None for admin in (first, second)]
    assert sorted(revoked) == [False, True]
