"""The benchmarks' FastAPI peer is the same API as ours: every route, the same answers.

The cold-start and warm-cost targets are ratios against this peer
(benchmarks/peers/fastapi_app.py), so it must do what our handler does, or the
ratios compare different work. Each case below goes to both handlers against
the same database and moto server: a happy path of every route and the usual
refusals (no or wrong credentials, the allowlist, validation, inspection,
limits, unknown paths and methods). Status and error code must match. A case
that changes state builds its own data for each handler (`n`), so the second
handler is not answering a different question (a second unblock is a 404).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.routing import APIRoute

from ops.apigw import LocalLambdaContext, response_headers, rest_event
from ops.seed import seed_demo_data
from ops.webhook import signed_request
from tests.integration.identity.conftest import ADMIN_IP
from tests.support.identity import recall_event
from tests.support.waf import create_resources

OUTSIDE_IP = "198.51.100.20"


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    query: str = ""
    body: bytes | None = None
    source_ip: str = OUTSIDE_IP


def _json(document: Any) -> bytes:
    return json.dumps(document).encode()


@pytest.fixture
def ctx(world, monkeypatch) -> dict[str, Any]:
    create_resources(monkeypatch)
    user = world.create_user("parity-user@example.com", "correct horse")
    admin = world.create_user("parity-admin@example.com", "battery staple", role="admin")
    seed_demo_data(world.db.admin_conninfo)
    subscriptions = [
        world.query(
            "INSERT INTO subscriptions (user_id, product) VALUES (%s, %s) RETURNING id",
            (user, f"crib {n}"),
        )[0][0]
        for n in range(2)
    ]
    return {
        "world": world,
        "user": user,
        "user_token": world.token(user),
        "user_key": world.create_key(user, limit=100_000),
        "admin": admin,
        "admin_key": world.create_key(admin, scopes=("admin", "recalls:read"), limit=100_000),
        "admin_token": world.token(admin, "admin"),
        "expired_admin_token": _expired_token(admin, "admin"),
        "recall": world.query("SELECT min(id) FROM recalls")[0][0],
        # One per handler for the cases that delete.
        "subscriptions": [str(found) for found in subscriptions],
        # One key per handler for the cases that revoke or rotate a key.
        "spare_keys": [world.create_key(user, limit=10) for _ in range(4)],
    }


def _expired_token(user_id: uuid.UUID, role: str) -> str:
    from functions.shared.identity.tokens import issue_access_token

    return issue_access_token(user_id, role, now=time.time() - 7200).token


def _user(ctx: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {ctx['user_token']}"}


def _admin(ctx: dict[str, Any], **extra: str) -> dict[str, str]:
    return {
        "X-API-Key": ctx["admin_key"],
        "Authorization": f"Bearer {ctx['admin_token']}",
        **extra,
    }


def _key_id(plaintext: str) -> str:
    from functions.shared.identity.api_keys import parse_api_key

    parsed = parse_api_key(plaintext)
    assert parsed is not None
    return parsed.key_id


def _signed(ctx: dict[str, Any], body: bytes) -> Call:
    """A webhook delivery signed with the live secret, as the feed sends it."""
    headers = signed_request(ctx["world"].webhook_secret, body)
    return Call("POST", "/webhooks/recalls", headers=headers, body=body)


JSON = {"Content-Type": "application/json"}

# name -> (the status both must answer, (ctx, n) -> the request); n is 0 for our
# handler, 1 for the peer.
CASES: dict[str, tuple[int, Callable[[dict[str, Any], int], Call]]] = {
    "health": (200, lambda c, n: Call("GET", "/health")),
    "recalls anonymous": (200, lambda c, n: Call("GET", "/recalls", query="q=crib&limit=5")),
    "recalls with a key": (
        200,
        lambda c, n: Call("GET", "/recalls", headers={"X-API-Key": c["user_key"]}, query="q=crib"),
    ),
    "recalls with a token": (200, lambda c, n: Call("GET", "/recalls", headers=_user(c))),
    "recalls, unknown key": (
        401,
        lambda c, n: Call("GET", "/recalls", headers={"X-API-Key": "bs_live_nosuchkey_secret"}),
    ),
    "recalls, limit out of range": (422, lambda c, n: Call("GET", "/recalls", query="limit=0")),
    "recalls, bad date": (422, lambda c, n: Call("GET", "/recalls", query="since=yesterday")),
    "recalls, date as Unix time": (
        422,
        lambda c, n: Call("GET", "/recalls", query="since=1735689600"),
    ),
    "recalls, limit not in digits": (422, lambda c, n: Call("GET", "/recalls", query="limit=1_0")),
    "recalls, SQL injection": (400, lambda c, n: Call("GET", "/recalls", query="q=' OR 1=1--")),
    "recall by id": (200, lambda c, n: Call("GET", f"/recalls/{c['recall']}")),
    "recall by id, unknown": (404, lambda c, n: Call("GET", "/recalls/987654")),
    "recall by id, malformed": (400, lambda c, n: Call("GET", "/recalls/abc")),
    "path traversal": (400, lambda c, n: Call("GET", "/recalls/..%2f..%2fetc%2fpasswd")),
    "subscriptions": (200, lambda c, n: Call("GET", "/me/subscriptions", headers=_user(c))),
    "subscriptions, no token": (401, lambda c, n: Call("GET", "/me/subscriptions")),
    "subscriptions, forged token": (
        401,
        lambda c, n: Call("GET", "/me/subscriptions", headers={"Authorization": "Bearer a.b.c"}),
    ),
    "subscribe": (
        201,
        lambda c, n: Call(
            "POST",
            "/me/subscriptions",
            headers={**_user(c), **JSON},
            body=_json({"product": f"stroller {n}"}),
        ),
    ),
    "subscribe, invalid body": (
        422,
        lambda c, n: Call(
            "POST",
            "/me/subscriptions",
            headers={**_user(c), **JSON},
            body=_json({"product": 5, "surprise": True}),
        ),
    ),
    "subscribe, not JSON": (
        400,
        lambda c, n: Call("POST", "/me/subscriptions", headers={**_user(c), **JSON}, body=b"{nope"),
    ),
    "subscribe, text/plain": (
        415,
        lambda c, n: Call(
            "POST",
            "/me/subscriptions",
            headers={**_user(c), "Content-Type": "text/plain"},
            body=b"stroller",
        ),
    ),
    "subscribe, XSS in body": (
        400,
        lambda c, n: Call(
            "POST",
            "/me/subscriptions",
            headers={**_user(c), **JSON},
            body=_json({"product": "<script>alert(1)</script>"}),
        ),
    ),
    "unsubscribe": (
        204,
        lambda c, n: Call("DELETE", f"/me/subscriptions/{c['subscriptions'][n]}", headers=_user(c)),
    ),
    "unsubscribe, unknown": (
        404,
        lambda c, n: Call("DELETE", f"/me/subscriptions/{uuid.uuid4()}", headers=_user(c)),
    ),
    "login": (
        200,
        lambda c, n: Call(
            "POST",
            "/auth/login",
            headers=JSON,
            body=_json({"email": "parity-user@example.com", "password": "correct horse"}),
        ),
    ),
    "login, wrong password": (
        401,
        lambda c, n: Call(
            "POST",
            "/auth/login",
            headers=JSON,
            body=_json({"email": "parity-user@example.com", "password": "wrong"}),
            source_ip=f"198.51.100.{30 + n}",
        ),
    ),
    "login, a password that reads like an attack is only compared": (
        401,
        lambda c, n: Call(
            "POST",
            "/auth/login",
            headers=JSON,
            body=_json({"email": "parity-user@example.com", "password": "x' OR 1=1 --"}),
            source_ip=f"198.51.100.{40 + n}",
        ),
    ),
    "login, an attack in the email": (
        400,
        lambda c, n: Call(
            "POST",
            "/auth/login",
            headers=JSON,
            body=_json(
                {"email": "x' OR 1=1 --", "password": "whatever"}  # pragma: allowlist secret
            ),
        ),
    ),
    "login, missing field": (
        422,
        lambda c, n: Call(
            "POST", "/auth/login", headers=JSON, body=_json({"email": "x@example.com"})
        ),
    ),
    "me": (200, lambda c, n: Call("GET", "/auth/me", headers=_user(c))),
    "jwks": (200, lambda c, n: Call("GET", "/.well-known/jwks.json")),
    "webhook": (
        200,
        lambda c, n: _signed(c, recall_event(f"PARITY-{n}")),
    ),
    "webhook, unsigned": (
        401,
        lambda c, n: Call("POST", "/webhooks/recalls", headers=JSON, body=recall_event("PARITY-X")),
    ),
    "webhook, invalid event": (
        422,
        lambda c, n: _signed(c, b'{"type": "recall.deleted"}'),
    ),
    "admin users": (
        200,
        lambda c, n: Call("GET", "/admin/users", headers=_admin(c), source_ip=ADMIN_IP),
    ),
    "admin users, outside the allowlist": (
        403,
        lambda c, n: Call("GET", "/admin/users", headers=_admin(c)),
    ),
    "admin users, no token": (
        401,
        lambda c, n: Call(
            "GET", "/admin/users", headers={"X-API-Key": c["admin_key"]}, source_ip=ADMIN_IP
        ),
    ),
    "admin users, a user's credentials": (
        403,
        lambda c, n: Call(
            "GET",
            "/admin/users",
            headers={"X-API-Key": c["user_key"], "Authorization": f"Bearer {c['user_token']}"},
            source_ip=ADMIN_IP,
        ),
    ),
    "admin users, expired token": (
        401,
        lambda c, n: Call(
            "GET",
            "/admin/users",
            headers={
                "X-API-Key": c["admin_key"],
                "Authorization": f"Bearer {c['expired_admin_token']}",
            },
            source_ip=ADMIN_IP,
        ),
    ),
    "admin users, wrong key": (
        401,
        lambda c, n: Call(
            "GET",
            "/admin/users",
            headers=_admin(c, **{"X-API-Key": c["admin_key"][:-6] + "AAAAAA"}),
            source_ip=ADMIN_IP,
        ),
    ),
    "admin users, wrong method": (
        401,
        lambda c, n: Call("PUT", "/admin/users", source_ip=ADMIN_IP),
    ),
    "admin, unknown path": (
        404,
        lambda c, n: Call("GET", "/admin/nothing-here", headers=_admin(c), source_ip=ADMIN_IP),
    ),
    "create key": (
        201,
        lambda c, n: Call(
            "POST",
            "/admin/api-keys",
            headers={**_admin(c), **JSON},
            body=_json({"owner_id": str(c["user"]), "scopes": ["recalls:read"]}),
            source_ip=ADMIN_IP,
        ),
    ),
    "create key, bad scope": (
        422,
        lambda c, n: Call(
            "POST",
            "/admin/api-keys",
            headers={**_admin(c), **JSON},
            body=_json({"owner_id": str(c["user"]), "scopes": ["root"]}),
            source_ip=ADMIN_IP,
        ),
    ),
    "list keys": (
        200,
        lambda c, n: Call(
            "GET",
            "/admin/api-keys",
            headers=_admin(c),
            query=f"owner_id={c['user']}",
            source_ip=ADMIN_IP,
        ),
    ),
    "revoke key": (
        200,
        lambda c, n: Call(
            "POST",
            f"/admin/api-keys/{_key_id(c['spare_keys'][n])}/revoke",
            headers=_admin(c),
            source_ip=ADMIN_IP,
        ),
    ),
    "rotate key": (
        201,
        lambda c, n: Call(
            "POST",
            f"/admin/api-keys/{_key_id(c['spare_keys'][2 + n])}/rotate",
            headers={**_admin(c), **JSON},
            body=_json({"grace_days": 1}),
            source_ip=ADMIN_IP,
        ),
    ),
    "revoke key, malformed id": (
        404,
        lambda c, n: Call(
            "POST", "/admin/api-keys/not-a-key/revoke", headers=_admin(c), source_ip=ADMIN_IP
        ),
    ),
    "block": (
        201,
        lambda c, n: Call(
            "POST",
            "/admin/blocks",
            headers={**_admin(c), **JSON},
            body=_json(
                {"targets": [f"203.0.113.{10 + n}", f"198.51.{100 + n}.0/24"], "reason": "parity"}
            ),
            source_ip=ADMIN_IP,
        ),
    ),
    "block the admin's own network": (
        409,
        lambda c, n: Call(
            "POST",
            "/admin/blocks",
            headers={**_admin(c), **JSON},
            body=_json({"targets": [ADMIN_IP], "reason": "oops"}),
            source_ip=ADMIN_IP,
        ),
    ),
    "list blocks": (
        200,
        lambda c, n: Call("GET", "/admin/blocks", headers=_admin(c), source_ip=ADMIN_IP),
    ),
    "unblock": (
        204,
        lambda c, n: Call(
            "DELETE", f"/admin/blocks/203.0.113.{10 + n}", headers=_admin(c), source_ip=ADMIN_IP
        ),
    ),
    "unblock a network": (
        204,
        lambda c, n: Call(
            "DELETE", f"/admin/blocks/198.51.{100 + n}.0/24", headers=_admin(c), source_ip=ADMIN_IP
        ),
    ),
    "unblock, not blocked": (
        404,
        lambda c, n: Call(
            "DELETE", "/admin/blocks/203.0.113.99", headers=_admin(c), source_ip=ADMIN_IP
        ),
    ),
    "unknown path": (404, lambda c, n: Call("GET", "/nowhere")),
    "wrong method": (405, lambda c, n: Call("DELETE", "/health")),
    "wrong method on a user path": (405, lambda c, n: Call("PUT", "/me/subscriptions")),
    "wrong method on the webhook": (405, lambda c, n: Call("GET", "/webhooks/recalls")),
    "head of a read": (200, lambda c, n: Call("HEAD", "/recalls", headers=_user(c))),
    "head where get is not": (405, lambda c, n: Call("HEAD", "/auth/login")),
    "oversized header": (
        431,
        lambda c, n: Call("GET", "/health", headers={"X-Filler": "x" * 20_000}),
    ),
}


def _call(handler: Any, call: Call) -> tuple[int, str | None]:
    event = rest_event(
        call.method,
        call.path,
        headers=call.headers,
        query=call.query,
        body=call.body,
        source_ip=call.source_ip,
    )
    response = handler(event, LocalLambdaContext())
    headers = {k.lower(): v for k, v in response_headers(response).items()}
    assert "strict-transport-security" in headers, (call.path, headers)
    body = response.get("body") or ""
    code = None
    if call.method == "HEAD":
        assert body == "", (call.path, body)
        # No body to name the error: the Allow header tells a 405 apart
        code = headers.get("allow")
    elif int(response["statusCode"]) >= 400:
        code = json.loads(body)["error"]["code"]
        # A 401 names the credential to fix: the challenge must be the same too
        if int(response["statusCode"]) == 401:
            code = f"{code} {headers.get('www-authenticate')}"
    return int(response["statusCode"]), code


def test_every_route_of_our_api_is_a_route_of_the_peer():
    from benchmarks.peers.fastapi_app import app as peer
    from functions.api.app import app as ours

    def shape(path: str) -> str:
        return path.replace("<", "{").replace(">", "}")

    our_routes = {(r.method, shape(r.path)) for r in ours._static_routes + ours._dynamic_routes}
    peer_routes = {
        (method, route.path)
        for route in peer.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    assert our_routes == peer_routes


# FastAPI hands pydantic an alias per body parameter that pydantic ignores and warns
# about; the peer filters it at import, pytest's own warning capture brings it back.
@pytest.mark.filterwarnings("ignore::pydantic.warnings.UnsupportedFieldAttributeWarning")
def test_the_peer_answers_every_case_as_our_handler_does(ctx):
    from benchmarks.peers.fastapi_app import handler as peer
    from functions.api.handler import lambda_handler as ours

    # When every case goes to our handler and then to the peer
    answers = {
        name: (status, _call(ours, build(ctx, 0)), _call(peer, build(ctx, 1)))
        for name, (status, build) in CASES.items()
    }

    # Then both answer each with the status it calls for, and with the same error code
    wrong = {
        name: found
        for name, found in answers.items()
        if not found[0] == found[1][0] == found[2][0] or found[1][1] != found[2][1]
    }
    assert wrong == {}

    # And every route of ours answered at least one case with success
    from functions.api.app import app

    routes = app._static_routes + app._dynamic_routes
    successes = [build(ctx, 0) for status, build in CASES.values() if status < 300]
    served = {
        (route.method, route.path)
        for call in successes
        for route in routes
        if route.method == call.method and route.rule.match(call.path)
    }
    assert served == {(route.method, route.path) for route in routes}


def _pages(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The lines that page on-call for a refused delivery (the JSON line's `event`:
    caplog's own text holds the message only)."""
    from tests.support.logs import json_log_lines

    return [line for line in json_log_lines(caplog) if line.get("event") == "feed_delivery_refused"]


# A delivery the feed signed, refused at each stage that can refuse it: the limits
# (before identity), attack inspection (after it), and the route's event model.
REFUSED_DELIVERIES = {
    "too large": (413, recall_event("PARITY-LARGE", description="d" * 17_000)),
    "a script in a field": (400, recall_event("PARITY-SCRIPT", description="<script>x</script>")),
    "a field the event model does not take": (422, recall_event("PARITY-NEW", lot_numbers="A1")),
}


@pytest.mark.filterwarnings("ignore::pydantic.warnings.UnsupportedFieldAttributeWarning")
@pytest.mark.parametrize("case", REFUSED_DELIVERIES)
def test_the_peer_pages_on_call_for_a_signed_delivery_it_refuses_as_ours_does(ctx, caplog, case):
    """The same refusal is the same work: both call what pages on-call (its line is
    checked here; the metric comes with it)."""
    from benchmarks.peers.fastapi_app import handler as peer
    from functions.api.handler import lambda_handler as ours

    status, body = REFUSED_DELIVERIES[case]
    for handler in (ours, peer):
        caplog.clear()
        assert _call(handler, _signed(ctx, body))[0] == status
        assert [line["status"] for line in _pages(caplog)] == [status], handler

    # An unsigned one is an attacker's, for neither of them a page
    caplog.clear()
    unsigned = Call("POST", "/webhooks/recalls", headers=JSON, body=body)
    assert _call(ours, unsigned)[0] == _call(peer, unsigned)[0]
    assert not _pages(caplog)


@pytest.mark.filterwarnings("ignore::pydantic.warnings.UnsupportedFieldAttributeWarning")
@pytest.mark.parametrize(
    ("content_type", "status"), [("application/json", 405), ("text/plain", 415)]
)
def test_neither_pages_for_a_signed_request_sent_with_another_method(
    ctx, caplog, content_type, status
):
    """No route takes a PUT to the webhook, so it is no delivery, signed or not: routing
    refuses it (405), or the request limits first (415), and on-call hears of neither."""
    from benchmarks.peers.fastapi_app import handler as peer
    from functions.api.handler import lambda_handler as ours

    for n, handler in enumerate((ours, peer)):
        body = recall_event(f"PARITY-PUT-{n}")
        call = _signed(ctx, body)
        call.method = "PUT"
        call.headers["Content-Type"] = content_type
        caplog.clear()
        assert _call(handler, call)[0] == status, handler
        assert not _pages(caplog), handler
