"""`make run` behaves like the deployed stack (cdk/, docs/INFRASTRUCTURE.md) where
clients and on-call meet it: the WebACL's size (measured as sent) and scanner rules,
API Gateway's body
validator, a restart over an earlier run's database, the state file's database URL.

Each test drives the real local stack (moto server, PostgreSQL, the API behind the
local edge and the local API Gateway stand-in) over HTTP from a loopback address, as
tests/integration/ops/test_local_stack.py does, and holds it to what the WebACL
(cdk/waf.py), API Gateway (cdk/api.py) or a restart over an earlier run's database
would do.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest

from functions.shared import names
from functions.shared.settings import DEFAULT_MAX_BODY_BYTES
from functions.shared.waf_rules import MAX_QUERY_STRING_BYTES
from ops.demo_identity import DEMO_ADMIN_API_KEY, DEMO_API_KEY, DEMO_API_KEY_ID
from ops.local_stack import DEFAULT_RATE_LIMIT, local_stack
from tests.support.local_stack import running_stack, stack_options, stack_request
from tests.support.postgres import private_database

# All of 127/8 is loopback: 127.0.0.1 is the default admin allowlist, these are not.
OUTSIDER = "127.0.0.2"


@pytest.fixture
def stack(pg_cluster: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The local stack as `make run` starts it (the WebACL's own rate limit)."""
    monkeypatch.chdir(tmp_path)
    with running_stack(pg_cluster, DEFAULT_RATE_LIMIT) as state:
        yield state


def request(
    state: dict[str, Any],
    method: str,
    path: str,
    *,
    source: str = "127.0.0.1",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    return stack_request(state, method, path, source=source, body=body, headers=headers)


def assert_headers_of_a_gateway_response(headers: dict[str, str]) -> None:
    """What API Gateway's DEFAULT_4XX gateway response (cdk/api.py) sends: its error type
    and every security header but the CSP, which its static header mappings cannot
    hold. The local stack sends no better, or its audit would pass on an answer the
    deployed one meets without the CSP."""
    from functions.api.middleware.security_headers import SECURITY_HEADERS

    assert headers.get("x-amzn-ErrorType"), headers
    assert headers["Content-Type"] == "application/json"
    assert "Content-Security-Policy" not in headers, headers
    for name, value in SECURITY_HEADERS.items():
        if name != "Content-Security-Policy":
            assert headers.get(name) == value, name


# --- API Gateway's request validator ----------------------------------------------------


def waf_records(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Every record the local edge wrote to the WAF log group, oldest first."""
    import boto3

    logs = boto3.client("logs", endpoint_url=state["aws_endpoint_url"], region_name="us-east-1")
    events = logs.get_log_events(
        logGroupName=names.WAF_LOG_GROUP, logStreamName="local-edge", startFromHead=True
    )["events"]
    return [json.loads(event["message"]) for event in events]


@pytest.mark.parametrize(
    ("path", "headers", "rule"),
    [
        pytest.param("/health?pad=" + "a" * 4100, {}, "size-limits", id="query-over-4096"),
        pytest.param("/" + "a" * 2100, {}, "size-limits", id="path-over-2048"),
        pytest.param(
            "/health", {"User-Agent": "sqlmap/1.7.2#stable"}, "suspicious-user-agents", id="sqlmap"
        ),
        pytest.param("/admin/users", {}, "admin-allowlist", id="admin-from-outside"),
        pytest.param("/monitoring", {}, "admin-allowlist", id="monitoring-from-outside"),
        # The rule matches after URL_DECODE, NORMALIZE_PATH and LOWERCASE, as WAF does.
        pytest.param("/%61dmin/users", {}, "admin-allowlist", id="admin-percent-encoded"),
        pytest.param("//health/../Admin/users", {}, "admin-allowlist", id="admin-unnormalised"),
    ],
)
def test_a_request_the_webacl_blocks_is_blocked_by_the_local_edge_too(
    stack: dict[str, Any], path: str, headers: dict[str, str], rule: str
) -> None:
    """The WebACL's size-limits and scanner rules refuse these in AWS with the
    gateway's 403 and a BLOCK record the responder counts: so does `make run`, or a
    client would work locally and be refused once deployed."""
    status, sent, raw = request(stack, "GET", path, source=OUTSIDER, headers=headers)

    assert status == 403, raw
    assert json.loads(raw)["error"]["code"] == "request_refused"
    assert_headers_of_a_gateway_response(sent)
    last = waf_records(stack)[-1]
    assert (last["action"], last["terminatingRuleId"]) == ("BLOCK", rule)


def test_an_allowlisted_admin_passes_the_edge_to_the_apis_own_checks(
    stack: dict[str, Any],
) -> None:
    # From the default allowlist (127.0.0.1), with no credentials: the API's 401.
    status, _, raw = request(stack, "GET", "/admin/users")
    assert status == 401, raw
    last = waf_records(stack)[-1]
    assert (last["action"], last["terminatingRuleId"]) == ("ALLOW", "Default_Action")


def test_an_ordinary_client_passes_the_local_edge(stack: dict[str, Any]) -> None:
    status, _, _ = request(
        stack, "GET", "/health?q=" + "a" * 4000, source=OUTSIDER, headers={"User-Agent": "curl/8.5"}
    )
    assert status == 200
    last = waf_records(stack)[-1]
    assert (last["action"], last["terminatingRuleId"]) == ("ALLOW", "Default_Action")


def test_a_json_body_that_is_not_an_object_is_refused_as_api_gateway_refuses_it(
    stack: dict[str, Any],
) -> None:
    """cdk/api.py puts a request validator with a JSON-object body model on every method:
    API Gateway answers a JSON array or string body with its own 400 (DEFAULT_4XX,
    `request_refused`) before the function runs; so does the local stack, or a client
    written against `make run` would handle a status (the function's 422) AWS never
    sends."""
    for body in (b"[]", b'"parent@demo.babyshield.local"', b"42"):
        status, sent, raw = request(
            stack,
            "POST",
            "/auth/login",
            body=body,
            headers={"Content-Type": "application/json"},
        )
        answer = json.loads(raw)

        assert status == 400, (body, status, answer)
        assert answer["error"]["code"] == "request_refused", (body, answer)
        assert_headers_of_a_gateway_response(sent)


# --- The size-limits rule measures each part as sent --------------------------------------


def test_a_query_string_within_the_webacls_limit_as_sent_passes_the_local_edge(
    stack: dict[str, Any],
) -> None:
    """WAF's size-limits rule compares the query string as the client sent it (text
    transformation NONE) with MAX_QUERY_STRING_BYTES, so the local edge measures the
    raw query too, not the parameters re-encoded: a list of 1000 ids with unescaped
    commas, 3893 bytes as sent, passes (re-encoding made each `,` three bytes and
    refused it locally only)."""
    query = "ids=" + ",".join(str(i) for i in range(1000))
    assert len(query.encode()) <= MAX_QUERY_STRING_BYTES

    status, _, raw = request(stack, "GET", f"/health?{query}", source=OUTSIDER)

    assert status == 200, raw
    last = waf_records(stack)[-1]
    assert (last["action"], last["terminatingRuleId"]) == ("ALLOW", "Default_Action")


def test_a_query_string_over_the_webacls_limit_as_sent_is_blocked_by_the_local_edge(
    stack: dict[str, Any],
) -> None:
    """The other direction: a percent-encoded query of 4202 bytes as sent (1402 once
    decoded) is over the WebACL's limit, so WAF blocks it with the gateway's 403 and
    a size-limits BLOCK record; so does the local edge."""
    query = "q=" + "%41" * 1400
    assert len(query.encode()) > MAX_QUERY_STRING_BYTES

    status, _, raw = request(stack, "GET", f"/health?{query}", source=OUTSIDER)

    assert status == 403, raw
    assert json.loads(raw)["error"]["code"] == "request_refused"
    last = waf_records(stack)[-1]
    assert (last["action"], last["terminatingRuleId"]) == ("BLOCK", "size-limits")


def test_a_body_over_the_webacls_limit_is_blocked_at_the_edge_as_in_aws(
    stack: dict[str, Any],
) -> None:
    """cdk/waf.py's size-limits rule blocks a body over maxBodyBytes (the API's
    max_body_bytes, 16 KB by default; oversize handling MATCH) with the gateway's 403
    and a BLOCK record the responder counts, before the API's own 413 could answer:
    the local edge applies the body limit too, so a client never meets locally a
    `payload_too_large` it would not meet in AWS."""
    padding = "x" * (DEFAULT_MAX_BODY_BYTES + 1024)
    body = json.dumps({"email": "a@example.com", "password": padding}).encode()

    status, _, raw = request(
        stack,
        "POST",
        "/auth/login",
        source=OUTSIDER,
        body=body,
        headers={"Content-Type": "application/json"},
    )

    assert status == 403, raw
    assert json.loads(raw)["error"]["code"] == "request_refused"
    last = waf_records(stack)[-1]
    assert (last["action"], last["terminatingRuleId"]) == ("BLOCK", "size-limits")


# --- Restarting over an earlier run's database -----------------------------------------


def _admin_headers(state: dict[str, Any]) -> dict[str, str]:
    admin = next(u for u in state["users"] if u["role"] == "admin")
    status, _, raw = request(
        state,
        "POST",
        "/auth/login",
        body=json.dumps({"email": admin["email"], "password": admin["password"]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert status == 200, raw
    token = json.loads(raw)["access_token"]
    return {"X-API-Key": DEMO_ADMIN_API_KEY, "Authorization": f"Bearer {token}"}


def test_the_demo_key_the_banner_prints_works_after_a_restart_over_an_earlier_database(
    pg_cluster: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run` keeps the database between runs (the farewell says so) and prints
    the published demo keys in its banner and .babyshield/local.json on every start.
    A demo key revoked in an earlier session (an admin trying /admin/api-keys, as the
    README invites) works again after the next start: else the banner would print a
    key, and write it for scripts, that answers 401 to its own copy-paste commands."""
    monkeypatch.chdir(tmp_path)
    with private_database(pg_cluster) as database:
        options = stack_options(database)
        # Given an earlier session in which the admin revoked the demo user's key
        with local_stack(options) as first:
            status, _, raw = request(
                first,
                "POST",
                f"/admin/api-keys/{DEMO_API_KEY_ID}/revoke",
                headers=_admin_headers(first),
            )
            assert status == 200, raw

        # When `make run` starts again over the same database
        with local_stack(options) as again:
            printed = next(
                k["key"]
                for k in again["api_keys"]
                if k["purpose"] == "demo" and k["owner"] == "parent@demo.babyshield.local"
            )
            assert printed == DEMO_API_KEY
            # Then the key it prints works, as the banner's curl line promises
            status, _, raw = request(
                again, "GET", "/recalls?q=crib", headers={"X-API-Key": printed}
            )
            assert status == 200, raw


# --- The state file for scripts -------------------------------------------------------------


def test_the_state_files_database_url_reaches_the_database_whatever_its_password(
    trust_cluster: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """.babyshield/local.json's `database_url` is for scripts (psql "$URL"): a password
    holding `@`, `/` or `#` (common in generated passwords) must not make it name
    another host, which would receive part of the password as its name. (The server
    here trusts every password, so only the URL's parsing is tested.)"""
    import psycopg
    from psycopg.conninfo import make_conninfo

    monkeypatch.chdir(tmp_path)
    with private_database(trust_cluster) as database:
        options = stack_options(database)
        password = "p@ss/w#rd"  # pragma: allowlist secret
        options = dataclasses.replace(
            options, admin_conninfo=make_conninfo(database.admin_conninfo, password=password)
        )
        with local_stack(options) as state:
            url = state["database_url"]
            with psycopg.connect(url, connect_timeout=5) as conn:
                row = conn.execute("SELECT current_database()").fetchone()

    assert row is not None
    assert row[0] == database.name


# --- API Gateway's own refusals of the request's framing -------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Transfer-Encoding": "chunked"}, 411),
        ({"Content-Length": str(11 * 1024 * 1024)}, 413),
    ],
    ids=["chunked-411", "over-10mb-413"],
)
def test_a_request_the_gateway_refuses_is_answered_as_its_gateway_response(
    stack: dict[str, Any], headers: dict[str, str], status: int
) -> None:
    # Given a request API Gateway refuses before the function is invoked
    import http.client

    host, port = stack["api_url"].removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=15)
    try:
        connection.putrequest("POST", "/auth/login")
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        response.read()
        # Then the local stand-in answers it as the gateway response does in AWS, so
        # the local audit judges the headers AWS sends
        assert response.status == status
        assert_headers_of_a_gateway_response(dict(response.getheaders()))
    finally:
        connection.close()
