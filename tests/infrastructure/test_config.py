"""Deployment settings from CDK context: defaults, parsing, rejection of bad values."""

from __future__ import annotations

import pytest
from constructs import Node

from cdk.app import default_context
from cdk.config import DeploymentConfig
from cdk.stack import NO_ONCALL_SUBSCRIBER
from tests.infrastructure.conftest import Synthesized


class _Context:
    def __init__(self, values: dict[str, object]):
        self._values = values

    def try_get_context(self, key: str) -> object:
        return self._values.get(key)


def _from(values: dict[str, object]) -> DeploymentConfig:
    node: Node = _Context(values)  # type: ignore[assignment]
    return DeploymentConfig.from_context(node)


def test_cdk_json_defaults_equal_the_code_defaults():
    # Given cdk.json's context, When it is read, Then nothing differs from the
    # defaults in code, so a test synth and `make synth` build the same stack.
    assert _from(default_context()) == DeploymentConfig()


def test_comma_separated_context_values_are_parsed():
    config = _from(
        {
            "babyshield:geoBlockCountries": "kp, ir",
            "babyshield:adminAllowedCidrsV4": "203.0.113.0/24,198.51.100.7/32",
            "babyshield:dbMultiAz": "false",
            "babyshield:wafBlockedThreshold": "250",
        }
    )

    assert config.geo_block_countries == ("KP", "IR")
    assert config.admin_allowed_cidrs_v4 == ("203.0.113.0/24", "198.51.100.7/32")
    assert config.db_multi_az is False
    assert config.waf_blocked_threshold == 250


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("babyshield:geoBlockCountries", "KPX", "alpha-2"),
        ("babyshield:adminAllowedCidrsV4", "2001:db8::/32", "not an IPv4"),
        ("babyshield:adminAllowedCidrsV6", "10.0.0.0/8", "not an IPv6"),
        ("babyshield:adminAllowedCidrsV4", "10.0.0.1/8", "host bits"),
        ("babyshield:adminSignedRoutes", "POST /recalls", "not 'METHOD /admin"),
        ("babyshield:adminSignedRoutes", "/admin/api-keys", "not 'METHOD /admin"),
        ("babyshield:rateLimitPer5Minutes", "5", "between 10"),
        ("babyshield:failedSigninThreshold", "0", "at least 1"),
        ("babyshield:maxBodyBytes", "65537", "at most 64 KB"),
        ("babyshield:maxBodyBytes", "0", "between 1"),
        ("babyshield:oncallEmail", "oncall", "not one email address"),
        ("babyshield:oncallEmail", "a@example.org,b@example.org", "not one email address"),
        ("babyshield:oncallEmail", "on call@example.org", "not one email address"),
        # Past the function's concurrency a burst is Lambda's throttle: API Gateway's 500s
        ("babyshield:apiBurstLimit", "51", "at most|between 1 and apiReservedConcurrency"),
        ("babyshield:apiBurstLimit", "0", "between 1 and apiReservedConcurrency"),
    ],
)
def test_invalid_values_are_rejected_with_a_clear_message(key: str, value: str, message: str):
    with pytest.raises(ValueError, match=message):
        _from({key: value})


def test_an_oncall_address_is_taken_as_given():
    assert _from({"babyshield:oncallEmail": "oncall@example.org"}).oncall_email == (
        "oncall@example.org"
    )


def test_synth_warns_when_nobody_is_subscribed_to_oncall(synthesized: Synthesized):
    # cdk.json sets no oncallEmail, so the test synth is the unsubscribed case.
    warnings = [
        (path, entry["data"])
        for path, entries in synthesized.metadata.items()
        for entry in entries
        if entry["type"] == "aws:cdk:warning"
    ]

    assert [path for path, text in warnings if NO_ONCALL_SUBSCRIBER in text] == [
        "/BabyShield/Detection/OnCall"
    ], warnings


def test_admin_signed_routes_reach_the_api_as_the_setting_it_reads(monkeypatch):
    """A deployment can require signed admin requests (the key proven, never sent) on
    the routes it names; before, only the function's environment could, by hand."""
    from cdk.functions import function_specs
    from functions.shared.settings import get_settings

    config = _from(
        {"babyshield:adminSignedRoutes": "post /admin/api-keys*, DELETE /admin/blocks/*"}
    )
    (api,) = [
        spec
        for spec in function_specs(1, 1024, config.admin_signed_routes)
        if spec.package == "api"
    ]
    monkeypatch.setenv("ADMIN_SIGNED_ROUTES", api.environment["ADMIN_SIGNED_ROUTES"])
    get_settings.cache_clear()

    assert get_settings().admin_signed_routes == ("POST /admin/api-keys*", "DELETE /admin/blocks/*")
    (unsigned,) = [spec for spec in function_specs(1, 1024) if spec.package == "api"]
    assert "ADMIN_SIGNED_ROUTES" not in unsigned.environment
    get_settings.cache_clear()
