"""The admin API needs an admin-scoped key of an admin (functions/api/middleware/
admin_chain.py). Revoking the last live one would shut every admin out, and the way
back in is SQL from inside the VPC: the API refuses it and names the way on (rotate
the key with no grace, or issue another first)."""

from __future__ import annotations

from typing import Any

from tests.integration.identity.conftest import ADMIN_IP
from tests.support.api import call_api


def _key_id(api_key: str) -> str:
    return api_key.split("_", 2)[1]


def _admin(world, email: str) -> dict[str, Any]:
    admin_id = world.create_user(email, role="admin")
    api_key = world.create_key(admin_id, scopes=("admin",))
    return {
        "id": admin_id,
        "key_id": _key_id(api_key),
        "headers": {
            "X-API-Key": api_key,
            "Authorization": f"Bearer {world.token(admin_id, 'admin')}",
        },
    }


def _call(admin, method, path, body=None):
    return call_api(method, path, headers=admin["headers"], json_body=body, source_ip=ADMIN_IP)


def test_the_last_admin_key_is_not_revoked_and_the_answer_names_the_way_on(world):
    admin = _admin(world, "root@example.com")
    before = len(world.audit_rows())

    refused = _call(admin, "POST", f"/admin/api-keys/{admin['key_id']}/revoke")

    assert refused.status == 409
    message = refused.json()["error"]["message"]
    assert "last" in message
    assert "grace_days" in message
    # Still a working admin credential, and the attempt is in audit_log.
    assert _call(admin, "GET", "/admin/api-keys").status == 200
    rows = world.audit_rows()[before:]
    assert [(row[1], row[2]) for row in rows] == [("api_key_revoke", "failure")]
    assert rows[0][4]["reason"] == "conflict"
    assert world.query("SELECT revoked_at FROM api_keys WHERE key_id = %s", (admin["key_id"],)) == [
        (None,)
    ]


def test_with_another_admin_key_live_the_revoke_goes_through(world):
    admin = _admin(world, "root@example.com")
    other = _admin(world, "second@example.com")

    assert _call(admin, "POST", f"/admin/api-keys/{other['key_id']}/revoke").status == 200
    # Now the caller's own key is the last one.
    assert _call(admin, "POST", f"/admin/api-keys/{admin['key_id']}/revoke").status == 409


def test_keys_that_open_nothing_do_not_count_as_another_admin_key(world):
    """An expired or revoked admin key, an admin-scoped key of a former admin and a
    user's key open no admin route: with only those left, the key is still the last."""
    admin = _admin(world, "root@example.com")
    expired_owner = world.create_user("expired@example.com", role="admin")
    world.execute(
        "INSERT INTO api_keys (key_id, owner_id, secret_hash, scopes, rate_limit_per_minute, "
        "expires_at) VALUES ('00000000000000e1', %s, %s, %s, 60, now() - interval '1 second')",
        (expired_owner, b"\x00" * 32, ["admin"]),
    )
    former = _admin(world, "former@example.com")
    world.execute("UPDATE users SET role = 'user' WHERE id = %s", (former["id"],))
    revoked = _admin(world, "revoked@example.com")
    world.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = %s", (revoked["key_id"],))
    world.create_key(world.create_user("user@example.com"), scopes=("recalls:read",))

    assert _call(admin, "POST", f"/admin/api-keys/{admin['key_id']}/revoke").status == 409


def test_rotating_the_last_admin_key_with_no_grace_is_the_way_to_replace_it(world):
    admin = _admin(world, "root@example.com")

    rotated = _call(admin, "POST", f"/admin/api-keys/{admin['key_id']}/rotate", {"grace_days": 0})

    assert rotated.status == 201
    successor = rotated.json()["new_key"]["api_key"]
    headers = {**admin["headers"], "X-API-Key": successor}
    assert call_api("GET", "/admin/api-keys", headers=headers, source_ip=ADMIN_IP).status == 200


def test_a_revoked_key_revoked_again_is_not_refused_as_the_last(world):
    """Revoking is idempotent: a key already revoked takes nothing away."""
    admin = _admin(world, "root@example.com")
    other = _admin(world, "second@example.com")
    assert _call(admin, "POST", f"/admin/api-keys/{other['key_id']}/revoke").status == 200
    assert _call(admin, "POST", f"/admin/api-keys/{other['key_id']}/revoke").status == 200
