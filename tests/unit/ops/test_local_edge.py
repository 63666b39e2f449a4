"""The local edge applies the platform's WAF rules and writes WAF-format log records."""

from __future__ import annotations

import json

import boto3
import pytest

from functions.shared import names
from functions.shared.blocks import aws_client
from functions.shared.waf_rules import MAX_QUERY_STRING_BYTES
from ops.apigw import LocalLambdaContext, rest_event
from ops.local_edge import EdgeIpSets, LocalEdge, RateRule


def test_rate_rule_blocks_past_the_limit_and_recovers_after_the_window():
    # Given a limit of 3 requests per 300 s
    rule = RateRule(limit=3)
    # When 4 requests arrive within the window
    results = [rule.over_limit("192.0.2.1", t) for t in (0.0, 1.0, 2.0, 3.0)]
    # Then the 4th is refused until the oldest counted request leaves the window
    assert results[:3] == [None, None, None]
    assert results[3] == pytest.approx(297.0)
    # And other addresses are not affected
    assert rule.over_limit("192.0.2.2", 3.0) is None
    # And after the window it is allowed again
    assert rule.over_limit("192.0.2.1", 400.0) is None


def test_rate_rule_memory_is_bounded_under_a_flood():
    rule = RateRule(limit=5)
    for second in range(10_000):
        rule.over_limit("198.51.100.7", second * 0.001)
    assert len(rule._seen["198.51.100.7"]) == 6


@pytest.fixture
def edge_resources(aws):
    """The IP sets and WAF log group, created as the local stack creates them."""
    from ops.provision import ensure_log_stream
    from ops.waf import ensure_local_resources
    from tests.support.waf import clear_caches

    clear_caches()
    environment = ensure_local_resources()
    ensure_log_stream(boto3.client("logs"), names.WAF_LOG_GROUP, "local-edge")
    return EdgeIpSets.from_environment(environment)


def block_in_ipv4_set(ipset_id: str, cidr: str) -> None:
    """Put `cidr` in the v4 auto-block set, as the responder's sync does."""
    wafv2 = boto3.client("wafv2")
    current = wafv2.get_ip_set(Name=names.AUTO_BLOCK_IPSET_V4, Scope="REGIONAL", Id=ipset_id)
    wafv2.update_ip_set(
        Name=names.AUTO_BLOCK_IPSET_V4,
        Scope="REGIONAL",
        Id=ipset_id,
        Addresses=[cidr],
        LockToken=current["LockToken"],
    )


def ok_handler(event, context):
    return {"statusCode": 200, "headers": {}, "body": "{}"}


def records():
    events = boto3.client("logs").get_log_events(
        logGroupName=names.WAF_LOG_GROUP, logStreamName="local-edge"
    )["events"]
    return [json.loads(e["message"]) for e in events]


def test_address_in_auto_block_set_is_refused_on_the_next_request(edge_resources):
    edge = LocalEdge(ok_handler, rate_limit=100, ip_sets=edge_resources, aws_client=aws_client)
    event = rest_event("GET", "/health", source_ip="203.0.113.5")
    assert edge(event, LocalLambdaContext())["statusCode"] == 200
    # When the responder adds the address to the IP set
    block_in_ipv4_set(edge_resources.auto_block[4], "203.0.113.5/32")
    # Then the very next request is refused with security headers, and logged as a BLOCK
    response = edge(rest_event("GET", "/health", source_ip="203.0.113.5"), LocalLambdaContext())
    assert response["statusCode"] == 403
    assert response["headers"]["X-Frame-Options"] == "DENY"
    last = records()[-1]
    assert last["action"] == "BLOCK"
    assert last["terminatingRuleId"] == names.AUTO_BLOCK_RULE_V4


def test_flood_gets_429_with_retry_after_and_block_records(edge_resources):
    edge = LocalEdge(ok_handler, rate_limit=3, ip_sets=edge_resources, aws_client=aws_client)
    answers = [
        edge(rest_event("GET", "/health", source_ip="198.51.100.9"), LocalLambdaContext())
        for _ in range(5)
    ]
    assert [a["statusCode"] for a in answers] == [200, 200, 200, 429, 429]
    assert int(answers[-1]["headers"]["Retry-After"]) > 0
    logged = records()
    assert [r["action"] for r in logged] == ["ALLOW"] * 3 + ["BLOCK"] * 2
    assert {r["terminatingRuleId"] for r in logged if r["action"] == "BLOCK"} == {names.RATE_RULE}
    assert all(r["httpRequest"]["clientIp"] == "198.51.100.9" for r in logged)


def test_credentials_are_redacted_in_waf_logs(edge_resources):
    edge = LocalEdge(ok_handler, rate_limit=10, ip_sets=edge_resources, aws_client=aws_client)
    event = rest_event(
        "GET",
        "/health",
        headers={"Authorization": "Bearer secret-token", "Cookie": "s=secret-cookie"},
    )
    edge(event, LocalLambdaContext())
    text = json.dumps(records())
    assert "secret-token" not in text
    assert "secret-cookie" not in text
    assert "REDACTED" in text


def test_local_edge_blocks_an_ipv4_client_also_when_it_arrives_ipv4_mapped(edge_resources):
    """The block registry, the responder and the API write and read one spelling per
    network (an IPv4-mapped IPv6 address is its IPv4 one). The local edge, standing in
    for the WAF, must refuse ::ffff:203.0.113.5 once 203.0.113.5 is auto-blocked, not
    look it up in the IPv6 set only and let it through."""
    block_in_ipv4_set(edge_resources.auto_block[4], "203.0.113.5/32")
    edge = LocalEdge(ok_handler, rate_limit=100, ip_sets=edge_resources, aws_client=aws_client)
    plain = edge(rest_event("GET", "/health", source_ip="203.0.113.5"), LocalLambdaContext())
    mapped = edge(
        rest_event("GET", "/health", source_ip="::ffff:203.0.113.5"), LocalLambdaContext()
    )
    assert plain["statusCode"] == 403
    assert mapped["statusCode"] == 403


def test_local_edge_rate_rule_counts_an_ipv4_client_once_whatever_its_spelling(edge_resources):
    """The per-IP rate rule must count 198.51.100.9 and ::ffff:198.51.100.9 as the one
    client they are: sending every other request in the mapped spelling must not double
    the client's budget."""
    edge = LocalEdge(ok_handler, rate_limit=2, ip_sets=edge_resources, aws_client=aws_client)
    statuses = [
        edge(rest_event("GET", "/health", source_ip=ip), LocalLambdaContext())["statusCode"]
        for ip in ("198.51.100.9", "::ffff:198.51.100.9", "198.51.100.9", "::ffff:198.51.100.9")
    ]
    assert statuses == [200, 200, 429, 429]


def test_size_rule_measures_the_query_string_as_sent_not_as_re_encoded(edge_resources):
    """WAF's size-limits rule counts the query string's bytes as the client sent them
    (text transformation NONE); the event holds only the decoded parameters, so the
    edge is handed the raw query and counts that."""
    edge = LocalEdge(ok_handler, rate_limit=100, ip_sets=edge_resources, aws_client=aws_client)
    commas = "ids=" + ",".join(str(i) for i in range(1000))  # 3893 bytes, 1000 ids
    escapes = "q=" + "%41" * 1400  # 4202 bytes, 1402 once decoded
    assert len(commas) <= MAX_QUERY_STRING_BYTES < len(escapes)

    answers = [
        edge.handle_as_sent(
            rest_event("GET", "/health", query=query), LocalLambdaContext(), query_string=query
        )["statusCode"]
        for query in (commas, escapes)
    ]

    assert answers == [200, 403]
    assert [r["terminatingRuleId"] for r in records()] == ["Default_Action", "size-limits"]


def test_an_event_without_its_request_is_measured_as_a_short_spelling_of_its_query(
    edge_resources,
):
    """A caller holding only the event (a test, a tool) gets its parameters spelled
    with only what must be escaped: a list of ids is not refused for commas that a
    client need not escape."""
    edge = LocalEdge(ok_handler, rate_limit=100, ip_sets=edge_resources, aws_client=aws_client)
    commas = "ids=" + ",".join(str(i) for i in range(1000))

    answer = edge(rest_event("GET", "/health", query=commas), LocalLambdaContext())

    assert answer["statusCode"] == 200


@pytest.mark.parametrize("base64_encoded", [False, True], ids=["text", "binary"])
def test_size_rule_blocks_a_body_over_the_limit_as_the_webacl_does(edge_resources, base64_encoded):
    """The WebACL's size-limits rule blocks a body over max_body_bytes as sent (its
    bytes, also when the event carries them base64-encoded) with a 403, before the
    API's own 413: one byte more than the limit is refused, the limit itself passes."""
    limit = 64
    edge = LocalEdge(
        ok_handler,
        rate_limit=100,
        ip_sets=edge_resources,
        aws_client=aws_client,
        max_body_bytes=limit,
    )
    filler = b"\xff" if base64_encoded else b"a"

    statuses = [
        edge(rest_event("POST", "/auth/login", body=filler * size), LocalLambdaContext())[
            "statusCode"
        ]
        for size in (limit, limit + 1)
    ]

    assert statuses == [200, 403]
    assert records()[-1]["terminatingRuleId"] == "size-limits"


def test_the_body_limit_is_the_apis_setting_by_default(edge_resources, monkeypatch):
    """CDK gives the WebACL and the API one maxBodyBytes (cdk/config.py): the edge
    reads the API's setting unless told otherwise."""
    from functions.shared.settings import get_settings

    monkeypatch.setenv("MAX_BODY_BYTES", "10")
    get_settings.cache_clear()
    try:
        edge = LocalEdge(ok_handler, rate_limit=100, ip_sets=edge_resources, aws_client=aws_client)
    finally:
        monkeypatch.delenv("MAX_BODY_BYTES")
        get_settings.cache_clear()

    answer = edge(
        rest_event("POST", "/auth/login", body=b"{" + b" " * 10 + b"}"), LocalLambdaContext()
    )

    assert answer["statusCode"] == 403
