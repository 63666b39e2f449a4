"""Fixtures for the responder against the moto server: its resources and one invocation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ops.apigw import LocalLambdaContext
from tests.support.waf import WafResources, clear_caches, create_resources


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
