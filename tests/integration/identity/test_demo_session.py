"""The README's session, end to end over HTTP: sign in as the demo user, read
/me/subscriptions with the token, /recalls with the demo API key, and send a signed
webhook with `babyshield webhook send`."""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest

from ops.cli import main as babyshield
from ops.demo_identity import (
    DEMO_ADMIN_API_KEY,
    DEMO_ADMIN_EMAIL,
    DEMO_ADMIN_PASSWORD,
    DEMO_API_KEY,
    DEMO_USER_EMAIL,
    DEMO_USER_PASSWORD,
    ensure_identity_secrets,
    ensure_identity_tables,
    seed_demo_identity,
)
from ops.local_server import LocalApiServer, api_handler


@pytest.fixture
def local_api(aws, api_db, monkeypatch):
    from functions.shared.settings import get_settings
    from tests.support.identity import reset_identity_caches

    monkeypatch.setenv("TEST_CALLER_IDENTITY", "0")
    monkeypatch.setenv("SCRYPT_N", "16")
    monkeypatch.setenv("SCRYPT_R", "1")
    monkeypatch.setenv("ADMIN_ALLOWED_CIDRS", "127.0.0.1/32")
    get_settings.cache_clear()
    reset_identity_caches()
    # Twice: every step must be safe on every start of the local stack.
    for _ in range(2):
        ensure_identity_secrets()
        ensure_identity_tables()
        seed_demo_identity(api_db.admin_conninfo)
    server = LocalApiServer(("127.0.0.1", 0), api_handler(), quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.url
    server.shutdown()
    server.server_close()
    reset_identity_caches()


def http(method, url, *, headers=None, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - the test's own loopback server
        url, data=data, method=method, headers=headers or {}
    )
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_readme_session(local_api, capsys):
    # Sign in as the demo user
    status, body = http(
        "POST",
        f"{local_api}/auth/login",
        body={"email": DEMO_USER_EMAIL, "password": DEMO_USER_PASSWORD},
    )
    assert status == 200
    token = body["access_token"]
    # Their subscriptions, with the token
    status, body = http(
        "GET", f"{local_api}/me/subscriptions", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 200
    # Recalls, with the demo API key
    status, body = http("GET", f"{local_api}/recalls", headers={"X-API-Key": DEMO_API_KEY})
    assert status == 200
    # A signed webhook, sent by the CLI
    code = babyshield(
        ["webhook", "send", "--url", f"{local_api}/webhooks/recalls", "--source-id", "DEMO-HOOK-1"]
    )
    assert code == 0, capsys.readouterr()
    status, body = http("GET", f"{local_api}/recalls?q=crib", headers={"X-API-Key": DEMO_API_KEY})
    assert "DEMO-HOOK-1" in [item["source_id"] for item in body["items"]]
    # And the demo admin passes every lock of the admin chain
    status, body = http(
        "POST",
        f"{local_api}/auth/login",
        body={"email": DEMO_ADMIN_EMAIL, "password": DEMO_ADMIN_PASSWORD},
    )
    admin_token = body["access_token"]
    status, body = http(
        "GET",
        f"{local_api}/admin/users",
        headers={"Authorization": f"Bearer {admin_token}", "X-API-Key": DEMO_ADMIN_API_KEY},
    )
    assert status == 200
    assert DEMO_USER_EMAIL in [user["email"] for user in body["users"]]


def test_webhook_send_with_a_wrong_secret_fails_cleanly(local_api, capsys):
    from functions.shared.identity.webhooks import generate_webhook_secret_value

    wrong = json.loads(generate_webhook_secret_value())["secret"]
    code = babyshield(
        ["webhook", "send", "--url", f"{local_api}/webhooks/recalls", "--secret", wrong]
    )
    assert code == 1
    assert "HTTP 401" in capsys.readouterr().out
