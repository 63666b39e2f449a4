"""The admin chain: allowlisted IP, admin-scoped API key, admin JWT (and optionally a
request signature). Each lock missing on its own is enough to refuse, with an audit row."""

from __future__ import annotations

import json

import pytest

from functions.api.middleware.admin_chain import sign_admin_request
from tests.integration.identity.conftest import ADMIN_IP
from tests.support.api import call_api


@pytest.fixture
def admin(world):
    admin_id = world.create_user("root@example.com", role="admin")
    user_id = world.create_user("parent@example.com")
    return {
        "id": admin_id,
        "key": world.create_key(admin_id, scopes=("admin", "recalls:read")),
        "token": world.token(admin_id, "admin"),
        "user_id": user_id,
    }


def admin_call(
    key, token, *, source_ip=ADMIN_IP, method="GET", path="/admin/users", body=None, extra=None
):
    headers = {}
    if key is not None:
        headers["X-API-Key"] = key
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    headers.update(extra or {})
    return call_api(method, path, headers=headers, source_ip=source_ip, json_body=body)


def test_all_locks_open_the_admin_users_list(world, admin):
    response = admin_call(admin["key"], admin["token"])
    assert response.status == 200
    users = response.json()["users"]
    assert {user["email"] for user in users} == {"root@example.com", "parent@example.com"}
    # No hash of any kind leaves the service
    assert all(set(user) == {"id", "email", "role", "created_at"} for user in users)
    assert "scrypt" not in response.body


def _missing_lock(world, admin, lock):
    """The request with every lock right except `lock`."""
    key, token, source_ip = admin["key"], admin["token"], ADMIN_IP
    if lock == "ip_not_allowlisted":
        source_ip = "203.0.113.50"
    elif lock == "no_api_key":
        key = None
    elif lock == "api_key_without_admin_scope":
        key = world.create_key(admin["id"], scopes=("recalls:read",))
    elif lock == "admin_scope_key_of_non_admin_owner":
        key = world.create_key(admin["user_id"], scopes=("admin",))
    elif lock == "invalid_api_key":
        key = key[:-3] + "xyz"
    elif lock == "no_jwt":
        token = None
    elif lock == "jwt_of_non_admin":
        token = world.token(admin["user_id"], "user")
    elif lock == "invalid_jwt":
        token = token[:-4] + "AAAA"
    return admin_call(key, token, source_ip=source_ip)


LOCKS = [
    ("ip_not_allowlisted", 403),
    ("no_api_key", 401),
    ("invalid_api_key", 401),
    ("api_key_without_admin_scope", 403),
    ("admin_scope_key_of_non_admin_owner", 403),
    ("no_jwt", 401),
    ("invalid_jwt", 401),
    ("jwt_of_non_admin", 403),
]


@pytest.mark.parametrize(("lock", "status"), LOCKS)
def test_each_missing_lock_alone_refuses(world, admin, lock, status):
    response = _missing_lock(world, admin, lock)
    assert response.status == status
    # The message is the generic one for the status, never which lock failed
    assert response.json()["error"]["message"] in {"Authentication is required.", "Access denied."}
    assert "users" not in response.json()


@pytest.mark.parametrize(("lock", "status"), LOCKS)
def test_each_refusal_writes_an_audit_row(world, admin, lock, status):
    _missing_lock(world, admin, lock)
    rows = [row for row in world.audit_rows() if row[1] == "admin_access"]
    assert len(rows) == 1
    _actor, _action, outcome, source_ip, detail = rows[0]
    assert outcome == "denied"
    assert source_ip == ("203.0.113.50" if lock == "ip_not_allowlisted" else ADMIN_IP)
    assert detail["path"] == "/admin/users"
    assert detail["reason"]
    # No credential material in the row
    serialized = json.dumps(detail)
    assert admin["key"][20:] not in serialized
    assert admin["token"] not in serialized


def test_signed_route_needs_a_valid_request_signature(world, admin, monkeypatch):
    from functions.shared.settings import get_settings

    monkeypatch.setenv("ADMIN_SIGNED_ROUTES", "POST /admin/api-keys/*/revoke")
    get_settings.cache_clear()
    target = world.create_key(admin["user_id"])
    path = f"/admin/api-keys/{target[3:19]}/revoke"
    # Without a signature: refused
    assert admin_call(admin["key"], admin["token"], method="POST", path=path).status == 401
    # With a signature made for another path: refused
    wrong = sign_admin_request(admin["key"], "POST", "/admin/api-keys/other/revoke", b"")
    assert (
        admin_call(admin["key"], admin["token"], method="POST", path=path, extra=wrong).status
        == 401
    )
    # With the right signature: done
    right = sign_admin_request(admin["key"], "POST", path, b"")
    assert (
        admin_call(admin["key"], admin["token"], method="POST", path=path, extra=right).status
        == 200
    )
    # Unsigned routes are unaffected
    assert admin_call(admin["key"], admin["token"]).status == 200


def test_stale_request_signature_is_refused(world, admin, monkeypatch):
    import time

    from functions.shared.settings import get_settings

    monkeypatch.setenv("ADMIN_SIGNED_ROUTES", "GET /admin/users")
    get_settings.cache_clear()
    old = sign_admin_request(
        admin["key"], "GET", "/admin/users", b"", timestamp=int(time.time()) - 600
    )
    assert admin_call(admin["key"], admin["token"], extra=old).status == 401


def test_unknown_admin_path_needs_the_locks_before_a_404(world, admin):
    # Without credentials an allowlisted caller learns nothing about which routes exist
    assert call_api("GET", "/admin/nothing-here", source_ip=ADMIN_IP).status == 401
    # With every lock, an unknown admin path is an ordinary 404
    response = admin_call(admin["key"], admin["token"], path="/admin/nothing-here")
    assert response.status == 404


def test_scanning_unknown_admin_paths_writes_no_audit_rows(world):
    # Refused at the allowlist and logged, but no database write per scanner request.
    for path in ("/admin/.env", "/admin/phpinfo", "/monitoring/x"):
        assert call_api("GET", path, source_ip="203.0.113.50").status == 403
    assert world.audit_rows() == []
