"""The admin chain: allowlisted IP, admin-scoped API key, admin JWT (and optionally a
request signature). Each lock missing on its own is enough to refuse, with an audit row."""

from __future__ import annotations

import base64
import hashlib
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


def _sign_routes(monkeypatch, routes):
    from functions.shared.settings import get_settings

    monkeypatch.setenv("ADMIN_SIGNED_ROUTES", routes)
    get_settings.cache_clear()


def signed_call(key, token, *, method="GET", path="/admin/users", query="", body=b"", headers=None):
    """What a client sends on a signed route: the key's id and a signature, not the key."""
    sent = {"Authorization": f"Bearer {token}"}
    sent |= (
        headers if headers is not None else sign_admin_request(key, method, path, body, query=query)
    )
    return call_api(method, path, headers=sent, query=query, body=body or None, source_ip=ADMIN_IP)


def test_signed_route_needs_a_valid_request_signature(world, admin, monkeypatch):
    _sign_routes(monkeypatch, "POST /admin/api-keys/*/revoke")
    target = world.create_key(admin["user_id"])
    path = f"/admin/api-keys/{target[3:19]}/revoke"
    # Without a signature: refused
    assert admin_call(admin["key"], admin["token"], method="POST", path=path).status == 401
    # With a signature made for another path: refused
    wrong = sign_admin_request(admin["key"], "POST", "/admin/api-keys/other/revoke", b"")
    assert signed_call(None, admin["token"], method="POST", path=path, headers=wrong).status == 401
    # With the right signature: done
    assert signed_call(admin["key"], admin["token"], method="POST", path=path).status == 200
    # Unsigned routes are unaffected
    assert admin_call(admin["key"], admin["token"]).status == 200


def test_a_signed_request_never_carries_the_key_secret(world, admin, monkeypatch):
    # Given a signed route and the headers a client sends on it
    _sign_routes(monkeypatch, "GET /admin/users")
    secret = admin["key"][20:]
    sent = sign_admin_request(admin["key"], "GET", "/admin/users", b"")
    # Then nothing in them is, or contains, the secret or its SHA-256 (the HMAC key)
    derived = (
        secret,
        hashlib.sha256(secret.encode()).hexdigest(),
        base64.b64encode(hashlib.sha256(secret.encode()).digest()).decode(),
    )
    assert not any(part in value for value in sent.values() for part in derived)
    assert "X-API-Key" not in sent
    assert signed_call(admin["key"], admin["token"]).status == 200


def test_the_whole_key_is_refused_on_a_signed_route_even_with_a_valid_signature(
    world, admin, monkeypatch
):
    # A client that still sends X-API-Key would hand every eavesdropper the HMAC key
    _sign_routes(monkeypatch, "GET /admin/users")
    signature = sign_admin_request(admin["key"], "GET", "/admin/users", b"")
    response = admin_call(admin["key"], admin["token"], extra=signature)
    assert response.status == 401
    assert response.json()["error"]["message"] == "Authentication is required."
    _actor, _action, outcome, _ip, detail = world.audit_rows()[-1]
    assert (outcome, detail["reason"]) == ("denied", "secret_sent_on_signed_route")
    assert detail["key_id"] == admin["key"][3:19]
    assert admin["key"][20:] not in json.dumps(detail)


def test_a_head_request_is_signed_as_the_head_it_is(world, admin, monkeypatch):
    """HEAD is answered wherever GET is (an uptime probe of an admin list): its
    signature covers the method the client sent, as every other request's does."""
    _sign_routes(monkeypatch, "GET /admin/users")
    response = signed_call(admin["key"], admin["token"], method="HEAD")
    assert response.status == 200
    assert response.body == ""
    # A GET's signature does not open a HEAD, nor a HEAD's a GET.
    as_get = sign_admin_request(admin["key"], "GET", "/admin/users", b"")
    assert signed_call(None, admin["token"], method="HEAD", headers=as_get).status == 401
    # And the refusal's audit row names the method sent.
    _actor, _action, outcome, _ip, detail = world.audit_rows()[-1]
    assert (outcome, detail["reason"], detail["method"]) == ("denied", "bad_signature", "HEAD")
    as_head = sign_admin_request(admin["key"], "HEAD", "/admin/users", b"")
    assert signed_call(None, admin["token"], method="GET", headers=as_head).status == 401


def test_a_captured_signed_request_cannot_be_turned_into_another(world, admin, monkeypatch):
    # Given an eavesdropper who saw one signed request (headers and token)
    _sign_routes(monkeypatch, "POST /admin/api-keys/*/revoke")
    victim = world.create_key(admin["user_id"])
    seen = sign_admin_request(admin["key"], "GET", "/admin/users", b"")
    # When they sign a revoke with what the capture holds: the whole key if it was
    # sent, else the key id with a secret of their own
    stolen = seen.get("X-API-Key") or f"bs_{seen['X-API-Key-Id']}_{'A' * 43}"
    path = f"/admin/api-keys/{victim[3:19]}/revoke"
    forged = sign_admin_request(stolen, "POST", path, b"")
    # Then it is refused, and the key still works
    assert signed_call(None, admin["token"], method="POST", path=path, headers=forged).status == 401
    assert call_api("GET", "/recalls", headers={"X-API-Key": victim}).status == 200


def test_the_query_string_is_signed(world, admin, monkeypatch):
    _sign_routes(monkeypatch, "GET /admin/api-keys")
    mine, theirs = f"owner_id={admin['id']}", f"owner_id={admin['user_id']}"
    world.create_key(admin["user_id"])
    signed = sign_admin_request(admin["key"], "GET", "/admin/api-keys", b"", query=mine)
    # Re-targeted to another owner on the way: refused (and the nonce is not spent)
    retargeted = signed_call(
        None, admin["token"], path="/admin/api-keys", query=theirs, headers=signed
    )
    assert retargeted.status == 401
    # Dropping the query is re-targeting too (it lists every owner's keys)
    dropped = signed_call(None, admin["token"], path="/admin/api-keys", headers=signed)
    assert dropped.status == 401
    # As signed: done
    response = signed_call(None, admin["token"], path="/admin/api-keys", query=mine, headers=signed)
    assert response.status == 200
    assert {key["owner_id"] for key in response.json()["keys"]} == {str(admin["id"])}


def test_a_query_in_another_order_or_encoding_still_verifies(world, admin, monkeypatch):
    # The canonical query is the decoded pairs, sorted: the client need not match byte for byte
    _sign_routes(monkeypatch, "GET /admin/api-keys")
    signed = sign_admin_request(
        admin["key"], "GET", "/admin/api-keys", b"", query=[("owner_id", str(admin["id"]))]
    )
    query = f"owner_id={str(admin['id']).replace('-', '%2D')}"
    response = signed_call(
        None, admin["token"], path="/admin/api-keys", query=query, headers=signed
    )
    assert response.status == 200


def test_a_signed_request_is_accepted_once(world, admin, monkeypatch):
    _sign_routes(monkeypatch, "GET /admin/users")
    signed = sign_admin_request(admin["key"], "GET", "/admin/users", b"")
    assert signed_call(None, admin["token"], headers=signed).status == 200
    # The same bytes again, inside the time window: a replay
    replayed = signed_call(None, admin["token"], headers=signed)
    assert replayed.status == 401
    assert world.audit_rows()[-1][4]["reason"] == "replayed_signature"
    # A fresh signature (new nonce) for the same request is fine
    assert signed_call(admin["key"], admin["token"]).status == 200


def test_no_webhook_id_can_use_up_an_admin_nonce_in_advance(world, admin, monkeypatch):
    # Given a signed admin request not sent yet, and a webhook sender (who holds only
    # the webhook secret) that learned its key id and nonce
    from functions.api.middleware.admin_chain import (
        SIGNATURE_NONCE_HEADER,
        SIGNATURE_TIMESTAMP_HEADER,
    )
    from functions.shared.identity.webhooks import VerifiedWebhook, claim_message_id

    _sign_routes(monkeypatch, "GET /admin/users")
    signed = sign_admin_request(admin["key"], "GET", "/admin/users", b"")
    nonce = next(v for k, v in signed.items() if k.lower() == SIGNATURE_NONCE_HEADER)
    key_id = admin["key"][3:19]
    timestamp = int(next(v for k, v in signed.items() if k.lower() == SIGNATURE_TIMESTAMP_HEADER))
    # When webhook deliveries claim every id the nonce's record could be written as
    for message_id in (f"{key_id}#{nonce}", f"admin-signature#{key_id}#{nonce}"):
        claim_message_id(VerifiedWebhook(message_id, timestamp))
    # Then the admin's request is still accepted, once
    assert signed_call(None, admin["token"], headers=signed).status == 200
    assert signed_call(None, admin["token"], headers=signed).status == 401


def test_a_signed_request_is_refused_when_replays_cannot_be_recorded(world, admin, monkeypatch):
    # Fail closed: without the record a captured request could be replayed
    _sign_routes(monkeypatch, "GET /admin/users")
    monkeypatch.setenv("WEBHOOK_NONCE_TABLE", "no-such-table")
    from functions.shared.settings import get_settings

    get_settings.cache_clear()
    assert signed_call(admin["key"], admin["token"]).status == 503


def test_stale_request_signature_is_refused(world, admin, monkeypatch):
    import time

    _sign_routes(monkeypatch, "GET /admin/users")
    old = sign_admin_request(
        admin["key"], "GET", "/admin/users", b"", timestamp=int(time.time()) - 600
    )
    assert signed_call(None, admin["token"], headers=old).status == 401


@pytest.mark.parametrize("path", ["/admin/users/", "/admin/users//", "/admin/users///"])
def test_slash_variants_of_a_signed_route_still_need_the_signature(world, admin, monkeypatch, path):
    _sign_routes(monkeypatch, "GET /admin/users")
    # The resolver routes it like /admin/users, so it is that route's lock
    assert admin_call(admin["key"], admin["token"], path=path).status == 401
    assert signed_call(admin["key"], admin["token"], path=path).status == 200


def test_a_signature_is_accepted_on_unsigned_routes_too(world, admin):
    # A client may sign every admin request and never send its secret at all
    assert signed_call(admin["key"], admin["token"]).status == 200


def test_key_and_key_id_together_are_refused(world, admin):
    signed = sign_admin_request(admin["key"], "GET", "/admin/users", b"")
    assert admin_call(admin["key"], admin["token"], extra=signed).status == 401


def test_an_admin_key_with_another_admins_token_is_refused(world, admin):
    # Given two admins, Alice (the fixture's) and Bob
    bob = world.create_user("bob@example.com", role="admin")
    bob_key = world.create_key(bob, scopes=("admin", "recalls:read"))
    bob_token = world.token(bob, "admin")
    # When one's key is paired with the other's token, either way round
    for key, token in ((admin["key"], bob_token), (bob_key, admin["token"])):
        response = admin_call(key, token)
        # Then access is denied, without saying why
        assert response.status == 403
        assert response.json()["error"]["message"] == "Access denied."
        assert world.audit_rows()[-1][4]["reason"] == "key_owner_mismatch"
    # Each with their own pair still gets in
    assert admin_call(bob_key, bob_token).status == 200
    assert admin_call(admin["key"], admin["token"]).status == 200


def test_a_signed_key_with_another_admins_token_is_refused(world, admin, monkeypatch):
    _sign_routes(monkeypatch, "GET /admin/users")
    bob = world.create_user("bob@example.com", role="admin")
    assert signed_call(admin["key"], world.token(bob, "admin")).status == 403


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
