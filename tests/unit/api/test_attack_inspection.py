"""Request validation through the real handler: attacks refused, searches served, bad input 4xx.

Every call goes through `functions.api.handler.lambda_handler` with an API
Gateway REST event from `ops.apigw.rest_event`, the same shape the local runner
and API Gateway produce.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from functions.api.middleware.attack_inspection import MAX_JSON_DEPTH, MAX_JSON_STRINGS
from functions.api.middleware.security_headers import SECURITY_HEADERS
from tests.security.corpus import NAMED_BENIGN
from tests.support.api import ApiResponse, call_api
from tests.support.logs import json_log_lines, raw_log_text

JSON = {"Content-Type": "application/json"}
# Inspection runs for every path, but a routed path may first ask for credentials
# (identity is checked before the body is parsed); a path with no route isolates
# the inspection: what passes it is a 404.
UNROUTED = "/no-such-route"

ATTACKS = [
    "' OR '1'='1' --",
    "1 UNION SELECT username, password FROM users",
    "'; DROP TABLE recalls--",
    "<script>alert(document.cookie)</script>",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    "../../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
]


def assert_security_headers(answer: ApiResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers.get(name) == value, name


def assert_rejected_without_echo(answer: ApiResponse, attack: str) -> None:
    assert answer.status == 400
    assert answer.json()["error"]["code"] == "rejected_input"
    # The generic message names neither the input nor the rule
    for fragment in (attack, quote(attack), "script", "passwd", "union", "select", "' or"):
        assert fragment.lower() not in answer.body.lower()
    assert_security_headers(answer)


@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_in_query_value_is_refused_without_echo(attack):
    # Given a search whose value is an attack
    # When it reaches the API
    answer = call_api("GET", "/health", query=f"q={quote(attack)}")
    # Then it is a 400 with a generic body that does not contain the input
    assert_rejected_without_echo(answer, attack)


def test_attack_in_query_name_is_refused():
    answer = call_api("GET", "/health", query=f"{quote(ATTACKS[0])}=1")
    assert_rejected_without_echo(answer, ATTACKS[0])


def test_attack_in_a_repeated_query_parameter_is_refused():
    # Given the attack only in the second value of a repeated parameter
    answer = call_api("GET", "/health", query=f"q=crib&q={quote(ATTACKS[0])}")
    # Then it is still seen
    assert_rejected_without_echo(answer, ATTACKS[0])


@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_in_json_body_value_is_refused(attack):
    body = json.dumps({"product": {"names": ["crib", attack]}})
    answer = call_api("POST", UNROUTED, headers=JSON, body=body)
    assert_rejected_without_echo(answer, attack)


@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_in_json_body_key_is_refused(attack):
    body = json.dumps({"product": {attack: "crib"}})
    answer = call_api("POST", UNROUTED, headers=JSON, body=body)
    assert_rejected_without_echo(answer, attack)


@pytest.mark.parametrize(
    "path",
    [
        "/files/..%2f..%2fetc%2fpasswd",
        "/files/%252e%252e%252fadmin",
        "/files/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "/files/1%27%20OR%20%271%27%3D%271",
        "/files/../../etc/passwd",
    ],
)
def test_attack_in_path_is_refused(path):
    answer = call_api("GET", path)
    assert answer.status == 400
    assert answer.json()["error"]["code"] == "rejected_input"
    assert_security_headers(answer)


@pytest.mark.parametrize("search", NAMED_BENIGN)
def test_benign_search_in_query_is_served(search):
    # Given a recall search with apostrophes, dashes, ampersands, quotes, SQL words
    # When it reaches the API
    answer = call_api("GET", "/health", query=f"q={quote(search)}&brand={quote(search)}")
    # Then it is not refused
    assert answer.status != 400
    assert answer.status == 200
    assert_security_headers(answer)


@pytest.mark.parametrize("search", NAMED_BENIGN)
def test_benign_product_names_in_json_body_and_path_pass_inspection(search):
    # A body for a path with no route is a 404, after inspection has let it through
    body = json.dumps({"product": search, "notes": [search], search: 1})
    answer = call_api("POST", UNROUTED, headers=JSON, body=body)
    assert answer.status == 404
    # And a product name in a path is a 404 for an unknown route, not a 400
    answer = call_api("GET", f"/products/{quote(search)}")
    assert answer.status == 404
    assert_security_headers(answer)


def test_rejection_is_logged_with_category_and_part_but_not_the_input(caplog):
    attack = "' OR '1'='1' --"
    call_api("GET", "/health", query=f"q={quote(attack)}")
    lines = [line for line in json_log_lines(caplog) if line.get("event") == "input_rejected"]
    assert len(lines) == 1
    assert lines[0]["category"] == "sql_injection"
    assert lines[0]["part"] == "query"
    assert lines[0]["rule"]
    assert attack not in raw_log_text(caplog)


def test_malformed_json_is_400():
    answer = call_api("POST", UNROUTED, headers=JSON, body='{"product": "crib"')
    assert answer.status == 400
    assert answer.json()["error"]["code"] == "bad_request"
    assert_security_headers(answer)


def test_deeply_nested_json_is_400():
    depth = MAX_JSON_DEPTH + 5
    body = '{"a":' * depth + '"crib"' + "}" * depth
    answer = call_api("POST", UNROUTED, headers=JSON, body=body)
    assert answer.status == 400
    assert "nested" in answer.json()["error"]["message"]
    assert_security_headers(answer)


def test_json_deeper_than_the_parser_stack_is_400_not_500(monkeypatch):
    # Given a body limit an operator raised far past the default, where this guard,
    # not the size check, is what stands
    monkeypatch.setenv("MAX_BODY_BYTES", str(1024 * 1024))
    body = "[" * 200_000 + "]" * 200_000
    answer = call_api("POST", UNROUTED, headers=JSON, body=body)
    assert answer.status == 400
    assert_security_headers(answer)


def test_json_with_too_many_strings_is_400(monkeypatch):
    monkeypatch.setenv("MAX_BODY_BYTES", str(1024 * 1024))  # as above
    body = json.dumps(["crib"] * (MAX_JSON_STRINGS + 1))
    answer = call_api("POST", UNROUTED, headers=JSON, body=body)
    assert answer.status == 400
    assert "too many" in answer.json()["error"]["message"]
    assert_security_headers(answer)


def test_invalid_utf8_body_is_400():
    answer = call_api("POST", UNROUTED, headers=JSON, body=b'{"product": "\xff\xfe"}')
    assert answer.status == 400
    assert "UTF-8" in answer.json()["error"]["message"]
    assert_security_headers(answer)


def test_wrong_content_type_is_415():
    headers = {"Content-Type": "text/plain"}
    answer = call_api("POST", UNROUTED, headers=headers, body="product=crib")
    assert answer.status == 415
    assert_security_headers(answer)


def test_oversized_body_is_413(monkeypatch):
    # Given a small body limit (settings are re-read for each test)
    monkeypatch.setenv("MAX_BODY_BYTES", "64")
    body = json.dumps({"product": "crib" * 50})
    answer = call_api("POST", UNROUTED, headers=JSON, body=body)
    assert answer.status == 413
    assert_security_headers(answer)


def test_oversized_body_is_refused_before_it_is_inspected(monkeypatch):
    # An oversized attack is a 413, not a 400: the size check comes first
    monkeypatch.setenv("MAX_BODY_BYTES", "64")
    body = json.dumps({"product": "' OR '1'='1' --" * 10})
    answer = call_api("POST", UNROUTED, headers=JSON, body=body)
    assert answer.status == 413


def test_absurdly_long_header_is_431():
    answer = call_api("GET", "/health", headers={"X-Padding": "a" * 100_000})
    assert answer.status == 431
    assert_security_headers(answer)
