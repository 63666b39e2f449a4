"""The local edge refuses in the shapes production answers with, so the audit and the
tests read locally what a client of the deployed API reads."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from functions.api.middleware.security_headers import SECURITY_HEADERS
from functions.shared import names
from functions.shared.blocks import aws_client
from ops.apigw import LocalLambdaContext, rest_event
from ops.local_edge import EdgeIpSets, LocalEdge


def ok_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "headers": {}, "body": "{}"}


@pytest.fixture
def ip_sets(aws) -> EdgeIpSets:
    from ops.provision import ensure_log_stream
    from ops.waf import ensure_local_resources
    from tests.support.waf import clear_caches

    clear_caches()
    environment = ensure_local_resources()
    ensure_log_stream(boto3.client("logs"), names.WAF_LOG_GROUP, "local-edge")
    return EdgeIpSets.from_environment(environment)


def test_the_rate_refusal_is_the_web_acls_custom_response(ip_sets):
    from cdk.waf import RATE_LIMIT_WINDOW_SECONDS, RATE_LIMITED_BODY

    # Given a limit of one request per window
    edge = LocalEdge(ok_handler, rate_limit=1, ip_sets=ip_sets, aws_client=aws_client)
    edge(rest_event("GET", "/health", source_ip="198.51.100.20"), LocalLambdaContext())
    # When the same address sends another
    refused = edge(rest_event("GET", "/health", source_ip="198.51.100.20"), LocalLambdaContext())
    # Then the answer is the rate rule's custom response in cdk/waf.py, body and header
    assert refused["statusCode"] == 429
    assert json.loads(refused["body"]) == json.loads(RATE_LIMITED_BODY)
    assert refused["headers"]["Retry-After"] == str(RATE_LIMIT_WINDOW_SECONDS)
    assert refused["headers"]["Content-Type"] == "application/json"


def test_an_auto_blocked_address_gets_the_gateways_4xx_shape_with_its_request_id(ip_sets):
    wafv2 = boto3.client("wafv2")
    current = wafv2.get_ip_set(
        Name=names.AUTO_BLOCK_IPSET_V4, Scope="REGIONAL", Id=ip_sets.auto_block[4]
    )
    wafv2.update_ip_set(
        Name=names.AUTO_BLOCK_IPSET_V4,
        Scope="REGIONAL",
        Id=ip_sets.auto_block[4],
        Addresses=["203.0.113.44/32"],
        LockToken=current["LockToken"],
    )
    edge = LocalEdge(ok_handler, rate_limit=10, ip_sets=ip_sets, aws_client=aws_client)
    event = rest_event("GET", "/recalls", source_ip="203.0.113.44")

    refused = edge(event, LocalLambdaContext())

    # As API Gateway's DEFAULT_4XX gateway response (cdk/api.py) renders a WAF block
    assert refused["statusCode"] == 403
    assert json.loads(refused["body"]) == {
        "error": {
            "code": "request_refused",
            "message": "Forbidden",
            "correlation_id": event["requestContext"]["requestId"],
        }
    }
    # with its header mappings, which cannot hold the CSP, and the gateway's error type
    for name, value in SECURITY_HEADERS.items():
        if name != "Content-Security-Policy":
            assert refused["headers"][name] == value
    assert "Content-Security-Policy" not in refused["headers"]
    assert refused["headers"]["x-amzn-ErrorType"] == "ForbiddenException"
