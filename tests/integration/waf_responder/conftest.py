"""Fixtures for the responder against the moto server: its resources and one invocation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from functions.waf_responder import offenders
from ops.apigw import LocalLambdaContext
from tests.support.aws import REGION
from tests.support.waf import WafResources, clear_caches, create_resources, create_web_acl


@pytest.fixture
def waf(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[WafResources]:
    """The responder's tables, IP sets, log groups and on-call topic on a clean moto."""
    # Thresholds low enough for a handful of log lines to make an offender.
    monkeypatch.setenv("BLOCKED_REQUESTS_THRESHOLD", "5")
    monkeypatch.setenv("FAILED_SIGN_INS_THRESHOLD", "3")
    monkeypatch.setenv("LOGS_QUERY_DEADLINE_SECONDS", "10")
    yield create_resources(monkeypatch)
    clear_caches()


@pytest.fixture
def invoke() -> Callable[[dict[str, Any]], dict[str, Any]]:
    def call(event: dict[str, Any]) -> dict[str, Any]:
        from functions.waf_responder.handler import lambda_handler

        context = LocalLambdaContext(
            function_name="babyshield-waf-responder",
            log_group_name="/aws/lambda/babyshield-waf-responder",
            timeout_seconds=60,
        )
        result: dict[str, Any] = lambda_handler(event, context)
        return result

    return call


@pytest.fixture
def rate_rule(waf: WafResources, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """The web ACL on moto, and GetRateBasedStatementManagedKeys (which moto lacks)
    stubbed on its own client: add one response per look (`limited`)."""
    create_web_acl()
    client = boto3.client("wafv2", region_name=REGION)
    stubber = Stubber(client)
    monkeypatch.setattr(offenders, "rate_keys_client", lambda: client)
    with stubber:
        yield stubber


def limited(stubber: Stubber, *addresses: str) -> None:
    """The rate rule's answer to the next look: these IPv4 clients are limited now."""
    stubber.add_response(
        "get_rate_based_statement_managed_keys",
        {"ManagedKeysIPV4": {"IPAddressVersion": "IPV4", "Addresses": list(addresses)}},
    )
