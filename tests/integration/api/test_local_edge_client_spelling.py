"""The local edge (the WAF's stand-in) reads a client as the registry and the API do:
an IPv4 client arriving IPv4-mapped is that IPv4 client."""

from __future__ import annotations

import pytest


@pytest.fixture
def edge_ipsets(aws):
    """The auto-block IP sets and the WAF log group, as the local stack creates them."""
    import boto3

    from functions.shared import names
    from ops.provision import ensure_log_stream
    from ops.waf import ensure_local_resources
    from tests.support.waf import clear_caches

    clear_caches()
    environment = ensure_local_resources()
    ensure_log_stream(boto3.client("logs"), names.WAF_LOG_GROUP, "local-edge")
    return {4: environment["AUTO_BLOCK_IPSET_V4_ID"], 6: environment["AUTO_BLOCK_IPSET_V6_ID"]}


def _ok_handler(event, context):
    return {"statusCode": 200, "headers": {}, "body": "{}"}


def test_local_edge_blocks_an_ipv4_client_also_when_it_arrives_ipv4_mapped(edge_ipsets):
    """The block registry, the responder and the API write and read one spelling per
    network (an IPv4-mapped IPv6 address is its IPv4 one). The local edge, standing in
    for the WAF, must refuse ::ffff:203.0.113.5 once 203.0.113.5 is auto-blocked, not
    look it up in the IPv6 set only and let it through."""
    import boto3

    from functions.shared import names
    from functions.shared.blocks import aws_client
    from ops.apigw import LocalLambdaContext, rest_event
    from ops.local_edge import LocalEdge

    wafv2 = boto3.client("wafv2")
    current = wafv2.get_ip_set(Name=names.AUTO_BLOCK_IPSET_V4, Scope="REGIONAL", Id=edge_ipsets[4])
    wafv2.update_ip_set(
        Name=names.AUTO_BLOCK_IPSET_V4,
        Scope="REGIONAL",
        Id=edge_ipsets[4],
        Addresses=["203.0.113.5/32"],
        LockToken=current["LockToken"],
    )
    edge = LocalEdge(_ok_handler, rate_limit=100, ipset_ids=edge_ipsets, aws_client=aws_client)
    plain = edge(rest_event("GET", "/health", source_ip="203.0.113.5"), LocalLambdaContext())
    mapped = edge(
        rest_event("GET", "/health", source_ip="::ffff:203.0.113.5"), LocalLambdaContext()
    )
    assert plain["statusCode"] == 403
    assert mapped["statusCode"] == 403


def test_local_edge_rate_rule_counts_an_ipv4_client_once_whatever_its_spelling(edge_ipsets):
    """The per-IP rate rule must count 198.51.100.9 and ::ffff:198.51.100.9 as the one
    client they are: sending every other request in the mapped spelling must not double
    the client's budget."""
    from functions.shared.blocks import aws_client
    from ops.apigw import LocalLambdaContext, rest_event
    from ops.local_edge import LocalEdge

    edge = LocalEdge(_ok_handler, rate_limit=2, ipset_ids=edge_ipsets, aws_client=aws_client)
    statuses = [
        edge(rest_event("GET", "/health", source_ip=ip), LocalLambdaContext())["statusCode"]
        for ip in ("198.51.100.9", "::ffff:198.51.100.9", "198.51.100.9", "::ffff:198.51.100.9")
    ]
    assert statuses == [200, 200, 429, 429]
