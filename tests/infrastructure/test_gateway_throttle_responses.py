"""API Gateway's own 429s tell a client how long to back off, as the platform's other
429s do (the WAF rate rule's custom response, the API's per-key limit). Every test
reads the session's one synth (`synthesized`)."""

from __future__ import annotations

import json
from typing import Any

from tests.infrastructure.conftest import Synthesized

REQUEST_ID = "c0ffee00-1234-4bcd-9876-0123456789ab"


def _gateway_responses(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    return {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in synthesized.resources("AWS::ApiGateway::GatewayResponse").values()
    }


def _sent_headers(response: dict[str, Any]) -> dict[str, str]:
    """The header mappings as the client receives them: static values, unquoted."""
    headers = {}
    for name, value in response.get("ResponseParameters", {}).items():
        assert value[0] == value[-1] == "'", (name, value)
        headers[name.removeprefix("gatewayresponse.header.")] = value[1:-1]
    return headers


def _rendered_body(response: dict[str, Any]) -> Any:
    template = response["ResponseTemplates"]["application/json"]
    return json.loads(template.replace("$context.requestId", REQUEST_ID))


def test_the_stage_throttles_429_carries_retry_after_and_the_rate_limited_body(
    synthesized: Synthesized,
):
    from cdk.waf import RATE_LIMITED_BODY
    from functions.api.middleware.security_headers import GATEWAY_RESPONSE_HEADERS

    # Given the stage's throttle (a token bucket: ThrottlingRateLimit tokens a second)
    (stage,) = synthesized.resources("AWS::ApiGateway::Stage").values()
    (settings,) = stage["Properties"]["MethodSettings"]

    # When API Gateway refuses a request over it (gateway response THROTTLED)
    responses = _gateway_responses(synthesized)
    assert "THROTTLED" in responses, "the throttle's 429 falls back to DEFAULT_4XX"
    throttled = responses["THROTTLED"]
    headers = _sent_headers(throttled)

    # Then it is a 429 with a Retry-After a client can back off by
    assert throttled["StatusCode"] == "429"
    assert headers["Retry-After"] == "1"
    # by which the bucket has a token again
    assert settings["ThrottlingRateLimit"] * int(headers["Retry-After"]) >= 1
    # with every header the gateway's other answers carry
    assert {n: headers.get(n) for n in GATEWAY_RESPONSE_HEADERS} == GATEWAY_RESPONSE_HEADERS
    # and the body of the WAF rate rule's 429, with the request id for support
    body = _rendered_body(throttled)
    assert body == {
        "error": {
            "code": json.loads(RATE_LIMITED_BODY)["error"]["code"],
            "message": "Too many requests. Retry after 1 second.",
            "correlation_id": REQUEST_ID,
        }
    }


def test_a_usage_plan_quota_would_have_its_own_429_with_retry_after(
    synthesized: Synthesized,
):
    """No usage plan today (per-key limits are the API's own, in DynamoDB), so the
    gateway never answers QUOTA_EXCEEDED. A plan with a quota added later needs that
    answer to name a wait fitting the quota's period, or it falls back to DEFAULT_4XX
    without one."""
    quotas = [
        plan["Properties"]["Quota"]
        for plan in synthesized.resources("AWS::ApiGateway::UsagePlan").values()
        if plan["Properties"].get("Quota")
    ]
    if not quotas:
        return

    responses = _gateway_responses(synthesized)
    assert "QUOTA_EXCEEDED" in responses, f"quotas {quotas} are refused without a Retry-After"
    assert int(_sent_headers(responses["QUOTA_EXCEEDED"])["Retry-After"]) >= 1
