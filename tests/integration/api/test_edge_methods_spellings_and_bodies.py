"""The API's edge as API Gateway's REST proxy calls it (ops.apigw.rest_event), through
the real handler, against real PostgreSQL and the moto server (the `world` fixture of
tests/integration/identity): HEAD, admin path spellings, the SSM allowlist, odd JSON
bodies, an unexpected exception.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.api.middleware.security_headers import SECURITY_HEADERS
from ops.apigw import LocalLambdaContext, response_headers, rest_event
from tests.integration.identity.conftest import ADMIN_IP, IdentityWorld, world
from tests.support.api import call_api
from tests.support.identity import client, identity_env

__all__ = ["identity_env", "world"]


OUTSIDE_IP = "203.0.113.50"


def invoke(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    from functions.api.handler import lambda_handler

    answer: dict[str, Any] = lambda_handler(
        rest_event(method, path, **kwargs), LocalLambdaContext()
    )
    return answer


def assert_secure_headers(headers: dict[str, str]) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name


@pytest.mark.parametrize("path", ["/health", "/recalls", "/.well-known/jwks.json"])
def test_head_is_answered_on_every_get_route(world: IdentityWorld, path: str):
    """The stage proxies ANY method to the function (cdk/api.py); HEAD is answered
    wherever GET is (RFC 9110 9.3.2; uptime monitors probe with it): GET's status and
    headers, no body."""
    get = call_api("GET", path)
    head = call_api("HEAD", path)

    assert get.status == 200
    assert head.status == 200, (head.status, head.header("Allow"))
    assert head.body == ""
    assert head.header("Content-Type") == get.header("Content-Type")
    assert_secure_headers(head.headers)


def test_head_is_refused_where_get_is_and_allow_names_it_where_get_is_allowed(world):
    # HEAD stands for GET: on a POST-only route it is the 405 GET gets
    refused = call_api("HEAD", "/auth/login")
    assert refused.status == 405
    assert refused.header("Allow") == "POST"
    assert refused.body == ""
    # and a 405 on a GET route names HEAD beside GET
    assert call_api("DELETE", "/health").header("Allow") == "GET, HEAD"


def test_head_runs_every_guard_of_the_get(world):
    # Without credentials, a protected GET's 401; with a key, counted like the GET
    assert call_api("HEAD", "/auth/me").status == 401
    owner = world.create_user("partner@example.com")
    key = world.create_key(owner, limit=1)
    statuses = [call_api(m, "/recalls", headers={"X-API-Key": key}).status for m in ("HEAD", "GET")]
    assert statuses in ([200, 429], [200, 200])  # two one-minute windows at most


# --- spellings, allowlist and bodies ---------------------------------------------


ADMIN_PATH_SPELLINGS = [
    "/admin/users",
    "/admin/users/",
    "//admin/users",
    "/admin//users",
    "/%61dmin/users",
    "/admin%2Fusers",
    "/admin/%75sers",
    "/ADMIN/users",
    "/Admin/users",
    "/admin/./users",
    "/admin/x/../users",
    "/admin;/users",
    "/admin/users;x",
    "/admin/users%00",
    "/admin/users%20",
    "/monitoring",
    "/admin",
]


@pytest.mark.parametrize("path", ADMIN_PATH_SPELLINGS)
def test_no_spelling_of_an_admin_path_serves_an_outside_address(world, path):
    """an outside address holding a real admin key and an admin token, with
    forwarding headers naming an allowlisted address, never gets an admin answer:
    every spelling of an admin path (encoded, doubled slashes, dot segments, case,
    parameters) is a refusal or a 404, with the security headers, never a 5xx."""
    admin_id = world.create_user("root@example.com", role="admin")
    headers = {
        **world.admin_headers(admin_id),
        "X-Forwarded-For": ADMIN_IP,
        "X-Real-IP": ADMIN_IP,
        "Forwarded": f"for={ADMIN_IP}",
    }

    response = call_api("GET", path, headers=headers, source_ip=OUTSIDE_IP)

    assert response.status in (400, 403, 404), (path, response.status, response.body)
    assert "root@example.com" not in response.body
    assert_secure_headers(response.headers)


@pytest.mark.parametrize("client_ip", ["192.0.2.10", "::ffff:192.0.2.10", "2001:db8::7"])
def test_the_ssm_allowlist_admits_its_admins_in_any_spelling(world, monkeypatch, client_ip):
    """with the allowlist read from SSM (a StringList with spaces, IPv4 and
    IPv6), an admin from an allowlisted address, IPv4-mapped or IPv6, passes; the
    environment's list is not consulted."""
    from functions.shared.settings import get_settings

    client("ssm").put_parameter(
        Name="/babyshield/review-admin-allowlist",
        Value="192.0.2.0/24, 2001:db8::/32",
        Type="StringList",
    )
    monkeypatch.setenv("ADMIN_ALLOWED_CIDRS_PARAMETER", "/babyshield/review-admin-allowlist")
    monkeypatch.setenv("ADMIN_ALLOWED_CIDRS", "198.51.100.0/24")
    get_settings.cache_clear()
    admin_id = world.create_user("root@example.com", role="admin")
    headers = world.admin_headers(admin_id)

    allowed = call_api("GET", "/admin/users", headers=headers, source_ip=client_ip)
    env_only = call_api("GET", "/admin/users", headers=headers, source_ip="198.51.100.7")

    assert allowed.status == 200, (allowed.status, allowed.body)
    assert env_only.status == 403


ODD_JSON_BODIES = {
    "NaN": '{"product": NaN}',
    "Infinity": '{"product": "crib", "brand": Infinity}',
    "int past the digit limit": '{"product": ' + "9" * 5000 + "}",
    "deep nesting": "[" * 5000 + "]" * 5000,
    "nesting past the depth limit": '{"product":' + '{"a":' * 40 + "1" + "}" * 40 + "}",
    "lone surrogate": '{"product": "crib\\ud800"}',
    "NUL": '{"product": "crib\\u0000"}',
    "top-level string": '"crib"',
    "top-level null": "null",
    "BOM": '\ufeff{"product": "crib"}',
    "duplicate keys, attack last": '{"product": "crib", "product": "<script>x</script>"}',
}


@pytest.mark.parametrize("body", ODD_JSON_BODIES.values(), ids=ODD_JSON_BODIES.keys())
def test_odd_json_is_a_4xx_without_echo(world, body):
    """valid-but-odd and invalid JSON on a body route is a 4xx with the security
    headers and nothing of the body in the answer."""
    user_id = world.create_user("parent@example.com")
    headers = {
        "Authorization": f"Bearer {world.token(user_id)}",
        "Content-Type": "application/json",
    }

    response = call_api("POST", "/me/subscriptions", headers=headers, body=body)

    assert 400 <= response.status < 500, (response.status, response.body)
    assert "crib" not in response.body
    assert "script" not in response.body
    assert "Traceback" not in response.body
    assert_secure_headers(response.headers)


def test_an_unexpected_exception_is_a_500_with_headers_and_no_trace(world, monkeypatch):
    """a route that raises answers 500 with the correlation id, the security
    headers, and neither the exception's text nor a trace."""
    from functions.api.recalls import logic

    def boom(**_: Any) -> None:
        raise RuntimeError("secret-detail-/work/main/functions")

    monkeypatch.setattr(logic, "search_recalls", boom)

    response = invoke("GET", "/recalls", query="q=crib")

    assert response["statusCode"] == 500
    assert "secret-detail" not in response["body"]
    assert "Traceback" not in response["body"]
    assert json.loads(response["body"])["error"]["code"] == "internal_error"
    assert_secure_headers(response_headers(response))


def test_a_duplicated_key_is_read_one_way_by_inspection_and_model(world):
    """with a key sent twice, inspection and the model both take the last value
    (one json.loads each), so what is stored is what was inspected: an attack in
    the first copy is dropped, never stored."""
    user_id = world.create_user("parent@example.com")
    headers = {
        "Authorization": f"Bearer {world.token(user_id)}",
        "Content-Type": "application/json",
    }
    body = '{"product": "<script>x</script>", "product": "crib"}'

    response = call_api("POST", "/me/subscriptions", headers=headers, body=body)

    assert response.status == 201
    assert world.query("SELECT product FROM subscriptions") == [("crib",)]
