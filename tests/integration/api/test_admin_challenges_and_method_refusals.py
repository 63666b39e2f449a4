"""The API's contract as a client meets it, through the real handler
(tests.support.api.call_api) against real PostgreSQL and the moto server (the `world`
fixture of tests/integration/identity):

- the admin chain's 401s name the credential to fix, as every other route's do
  (functions/api/middleware/admin_chain.py), while the allowlist's refusal, first,
  stays the same whatever credentials came;
- a method a path does not serve answers 405 with `Allow` before any credential is
  asked for, but under /admin and /monitoring, whose locks come first (functions/api/app.py);
- HEAD, answered wherever GET is, is documented wherever GET is (docs/openapi.json).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from functions.api.middleware.admin_chain import sign_admin_request
from functions.shared import names
from ops.apigw import LocalLambdaContext, response_headers, rest_event
from ops.webhook import signed_request
from tests.integration.identity.conftest import ADMIN_IP, IdentityWorld, world
from tests.support.api import ApiResponse, call_api
from tests.support.identity import identity_env, recall_event
from tests.support.logs import emf_metrics, json_log_lines

__all__ = ["identity_env", "world"]

DOCUMENT: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[3] / "docs" / "openapi.json").read_text(encoding="utf-8")
)
OUTSIDE_IP = "203.0.113.50"
API_KEY_CHALLENGE = 'ApiKey realm="babyshield", header="X-API-Key"'
SIGNATURE_CHALLENGE = (
    'ApiKey-Signature realm="babyshield", '
    'headers="X-API-Key-Id X-Signature-Timestamp X-Signature-Nonce X-Signature"'
)
BEARER_CHALLENGE = 'Bearer realm="babyshield"'
INVALID_TOKEN_CHALLENGE = 'Bearer realm="babyshield", error="invalid_token"'


def _expired_token(user_id: Any, role: str) -> str:
    from functions.shared.identity.tokens import issue_access_token

    # Signed with the live key, issued two hours ago: its 15 minutes are long over.
    return issue_access_token(user_id, role, now=time.time() - 7200).token


def _admin(world: IdentityWorld, email: str) -> tuple[Any, str]:
    admin = world.create_user(email, role="admin")
    return admin, world.create_key(admin, scopes=("admin", "recalls:read"))


def _admin_users(headers: dict[str, str], source_ip: str = ADMIN_IP) -> ApiResponse:
    return call_api("GET", "/admin/users", headers=headers, source_ip=source_ip)


def _sign_routes(monkeypatch: pytest.MonkeyPatch, routes: str) -> None:
    from functions.shared.settings import get_settings

    monkeypatch.setenv("ADMIN_SIGNED_ROUTES", routes)
    get_settings.cache_clear()


# --- the admin chain's 401s ---------------------------------------------------------------


def test_an_admin_whose_access_token_expired_is_told_so_as_on_every_other_route(world):
    """An admin's script sends its admin key with the token it got two hours ago (tokens
    live 15 minutes). It hears what /me/subscriptions says of such a token: "The access
    token has expired: sign in again" and `error="invalid_token"` with its description
    (RFC 6750 3.1), so it knows to sign in again."""
    # Given the answer to an expired token on a user route
    admin, key = _admin(world, "expired-admin@example.com")
    user = world.create_user("expired-user@example.com")
    on_user_route = call_api(
        "GET",
        "/me/subscriptions",
        headers={"Authorization": f"Bearer {_expired_token(user, 'user')}"},
    )
    assert on_user_route.status == 401
    assert "expired" in on_user_route.json()["error"]["message"]

    # When the admin presents its valid key with an expired admin token
    answer = _admin_users(
        {"X-API-Key": key, "Authorization": f"Bearer {_expired_token(admin, 'admin')}"}
    )

    # Then it is the same 401, message and challenge
    assert answer.status == 401
    assert answer.json()["error"]["message"] == on_user_route.json()["error"]["message"]
    assert answer.header("WWW-Authenticate") == on_user_route.header("WWW-Authenticate")


@pytest.mark.parametrize(
    ("authorization", "challenge"),
    [
        (None, BEARER_CHALLENGE),
        ("Bearer a.b.c", INVALID_TOKEN_CHALLENGE),
        ("Basic cm9vdDpyb290", INVALID_TOKEN_CHALLENGE),
    ],
    ids=["missing", "forged", "another-scheme"],
)
def test_an_admin_401_for_the_token_carries_the_bearer_challenge_of_its_reason(
    world, authorization, challenge
):
    """With a valid admin key, a missing token is asked for (`Bearer realm`), and one
    that does not verify or is not a bearer token gets `error="invalid_token"`, as on
    /me: the client can tell "send a token" from "your token is bad". A forged token's
    reason, `malformed`, is also a key's: the challenge follows the credential refused."""
    _, key = _admin(world, "forged-admin@example.com")
    headers = {"X-API-Key": key}
    if authorization is not None:
        headers["Authorization"] = authorization

    answer = _admin_users(headers)

    assert answer.status == 401
    assert answer.header("WWW-Authenticate") == challenge
    assert answer.json()["error"]["message"] == "Authentication is required."


def _wrong_secret(key: str) -> str:
    return key[:-6] + "AAAAAA"


@pytest.mark.parametrize(
    "key_of",
    [
        lambda world, admin, key: None,
        lambda world, admin, key: _wrong_secret(key),
        lambda world, admin, key: "bs_not-a-key",
        lambda world, admin, key: "bs_0123456789abcdef_" + "A" * 43,
        lambda world, admin, key: world.create_key(
            admin,
            scopes=("admin", "recalls:read"),
            expires_at=datetime.now(UTC) - timedelta(days=1),
        ),
    ],
    ids=["missing", "wrong-secret", "malformed", "unknown", "expired-key"],
)
def test_an_admin_401_for_the_api_key_names_the_api_key_challenge(world, key_of):
    """An admin sends its valid admin token with a missing, wrong, malformed, unknown or
    expired API key. The 401 names the key's challenge, as /recalls does
    (functions/shared/errors.py::Unauthorized), not the bearer token the client sent
    correctly; and an expired key (reason `expired`, like a token's) is not told to sign
    in again: its message is the generic one."""
    admin, key = _admin(world, "keyless-admin@example.com")
    sent = key_of(world, admin, key)
    headers = {"Authorization": f"Bearer {world.token(admin, 'admin')}"}
    if sent is not None:
        headers["X-API-Key"] = sent

    answer = _admin_users(headers)

    assert answer.status == 401
    assert answer.header("WWW-Authenticate") == API_KEY_CHALLENGE
    assert answer.json()["error"]["message"] == "Authentication is required."


@pytest.mark.parametrize("signature", ["missing", "bad", "stale"])
def test_an_admin_401_for_a_request_signature_names_the_signature_challenge(
    world, monkeypatch, signature
):
    """On a route that needs a request signature, a missing, bad or stale one is the
    key's lock failing (the signature proves the key); the route refuses X-API-Key, so
    the challenge names the signature's headers (tests/integration/api/
    test_signed_admin_route_challenge.py)."""
    _sign_routes(monkeypatch, "GET /admin/users")
    admin, key = _admin(world, "signing-admin@example.com")
    headers = {"Authorization": f"Bearer {world.token(admin, 'admin')}"}
    if signature == "bad":
        headers |= sign_admin_request(key, "GET", "/admin/other")
    elif signature == "stale":
        headers |= sign_admin_request(key, "GET", "/admin/users", timestamp=int(time.time()) - 600)

    answer = _admin_users(headers)

    assert answer.status == 401
    assert answer.header("WWW-Authenticate") == SIGNATURE_CHALLENGE


def test_an_address_off_the_allowlist_learns_nothing_from_the_credentials_it_sends(world):
    """The allowlist refuses first and the same way, whatever came: no challenge, no
    word of which credential was good, so the 401s above reach allowlisted admins only."""
    admin, key = _admin(world, "outside-admin@example.com")
    token = world.token(admin, "admin")
    attempts = [
        {},
        {"X-API-Key": key, "Authorization": f"Bearer {token}"},
        {"X-API-Key": _wrong_secret(key), "Authorization": f"Bearer {token}"},
        {"X-API-Key": key, "Authorization": f"Bearer {_expired_token(admin, 'admin')}"},
        {"X-API-Key": key, "Authorization": "Bearer a.b.c"},
    ]

    answers = [_admin_users(headers, source_ip=OUTSIDE_IP) for headers in attempts]

    assert {answer.status for answer in answers} == {403}
    assert {answer.header("WWW-Authenticate") for answer in answers} == {None}
    refusals = [{**answer.json()["error"], "correlation_id": None} for answer in answers]
    assert all(refusal == refusals[0] for refusal in refusals)


# --- 405 with Allow, as the document promises ----------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/webhooks/recalls", "POST"),
        ("PUT", "/me/subscriptions", "GET, HEAD, POST"),
        ("PATCH", "/auth/me", "GET, HEAD"),
        ("HEAD", "/webhooks/recalls", "POST"),
        ("GET", "/me/subscriptions/00000000-0000-0000-0000-000000000000", "DELETE"),
    ],
)
def test_a_method_a_path_does_not_serve_is_405_with_allow_as_documented(
    world, method, path, allowed
):
    """A client sends a documented path a method the document does not list for it (a
    feed operator opening the webhook URL in a browser, PUT where POST is meant). The
    document says it answers 405 with `Allow`, and it does, without a credential
    challenge first: no token or signature could make that request succeed."""
    description = DOCUMENT["info"]["description"]
    assert "A method a path does not list answers 405" in description

    answer = call_api(method, path)

    assert (answer.status, answer.header("Allow")) == (405, allowed), answer.body
    assert answer.header("WWW-Authenticate") is None


def test_a_method_the_resolver_routes_in_any_letter_case_has_its_credentials_checked(world):
    """Powertools routes a method whatever its letter case: a lowercase `get` of /recalls
    is that route, so it is never let past identity as a method no route serves (its
    wrong key would go unchecked and the search answer anonymously)."""
    owner = world.create_user("lowercase@example.com")
    key = world.create_key(owner)

    from functions.api.handler import lambda_handler

    event = rest_event("GET", "/recalls", headers={"X-API-Key": _wrong_secret(key)})
    event["httpMethod"] = "get"  # rest_event writes the method in upper case

    answer = lambda_handler(event, LocalLambdaContext())

    assert answer["statusCode"] == 401
    assert response_headers(answer)["WWW-Authenticate"] == API_KEY_CHALLENGE


def test_under_admin_every_lock_comes_before_the_405(world):
    """Under /admin a wrong method is refused by the locks first, as an unknown path is,
    so neither routes nor their methods can be enumerated; with every lock it is a 405."""
    admin, key = _admin(world, "method-admin@example.com")

    locked = call_api("PUT", "/admin/users", source_ip=ADMIN_IP)
    opened = call_api(
        "PUT",
        "/admin/users",
        headers={"X-API-Key": key, "Authorization": f"Bearer {world.token(admin, 'admin')}"},
        source_ip=ADMIN_IP,
    )

    assert locked.status == 401
    assert (opened.status, opened.header("Allow")) == (405, "GET, HEAD")


@pytest.mark.parametrize(
    ("content_type", "status"),
    [("application/json", 405), ("text/plain", 415)],
)
def test_a_signed_delivery_sent_with_another_method_pages_no_one(
    world, capsys, caplog, content_type, status
):
    """A request the feed's secret signed, sent with PUT: no route takes it, so it is
    no delivery (the feed POSTs; the signature does not cover the method, so anyone
    holding a captured delivery could send it so). Whether routing refuses it (405) or
    the request limits first (415), on-call is not paged; the same delivery POSTed
    with text/plain is a refused delivery, and pages."""
    body = recall_event("CPSC-WRONG-METHOD")
    headers = signed_request(world.webhook_secret, body) | {"Content-Type": content_type}

    answer = call_api("PUT", "/webhooks/recalls", headers=headers, body=body)

    assert answer.status == status
    assert names.METRIC_FEED_DELIVERIES_REFUSED not in emf_metrics(capsys.readouterr().out)
    assert not [
        line for line in json_log_lines(caplog) if line.get("event") == "feed_delivery_refused"
    ]
    if status == 415:
        posted = call_api("POST", "/webhooks/recalls", headers=headers, body=body)
        assert posted.status == 415
        assert emf_metrics(capsys.readouterr().out)[names.METRIC_FEED_DELIVERIES_REFUSED] == 1


# --- HEAD in the document --------------------------------------------------------------------


def test_head_is_documented_where_the_api_answers_it(world):
    """HEAD /recalls answers 200 and a 405 on a GET path says `Allow: GET, HEAD`, so the
    document lists HEAD wherever GET is: a client generated from it, or a developer
    reading it, is not told that a method the API answers is refused."""
    head = call_api("HEAD", "/recalls")
    refused = call_api("DELETE", "/recalls")

    assert head.status == 200
    assert "HEAD" in (refused.header("Allow") or "")
    for path, item in DOCUMENT["paths"].items():
        assert ("head" in item) is ("get" in item), path
